// SPDX-License-Identifier: Apache-2.0
#pragma once

// The demo CA's PKI: EC P-256 keys, the root, intermediate and TLS server
// certificates, end-entity certificates signed from CSRs, and their DER,
// PEM and base64 encodings. The functions throw std::runtime_error when an
// OpenSSL call fails.

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include <openssl/evp.h>
#include <openssl/x509.h>

namespace demo_ca::detail {

template <auto Free> struct OpensslFree {
  template <class T> void operator()(T *pointer) const { Free(pointer); }
};

using KeyPtr = std::unique_ptr<EVP_PKEY, OpensslFree<EVP_PKEY_free>>;
using CertificatePtr = std::unique_ptr<X509, OpensslFree<X509_free>>;
using CsrPtr = std::unique_ptr<X509_REQ, OpensslFree<X509_REQ_free>>;

// Generates an EC P-256 key.
KeyPtr generate_key();

// Creates the self-signed root CA certificate for `key`.
CertificatePtr make_root(EVP_PKEY *key);

// Creates the issuing CA certificate for `key`, signed by `root`.
CertificatePtr make_intermediate(EVP_PKEY *key, X509 *root, EVP_PKEY *root_key);

// Creates the TLS server certificate for `key` with the names localhost,
// 127.0.0.1 and ::1, signed by `root`.
CertificatePtr
make_tls_certificate(EVP_PKEY *key, X509 *root, EVP_PKEY *root_key);

// Signs an end-entity certificate with the CSR's subject and subjectAltName
// for `public_key`, which is the CSR's key except for Behaviour::wrong_key.
CertificatePtr sign_leaf(X509_REQ *csr,
                         EVP_PKEY *public_key,
                         X509 *intermediate,
                         EVP_PKEY *intermediate_key);

std::vector<unsigned char> to_der(X509 *certificate);
std::string to_pem(X509 *certificate);

// Encodes standard base64 with padding on one line.
std::string encode_base64(const unsigned char *data, std::size_t size);
std::string encode_base64(const std::vector<unsigned char> &bytes);
std::string encode_base64(const std::string &text);

// Parses the DER CSR of request `id` and verifies its signature. Throws
// std::invalid_argument, naming the id, when either fails.
CsrPtr parse_csr(const std::string &id,
                 const std::vector<unsigned char> &csr_der);

// The keys and certificates, created once at construction.
struct Pki {
  KeyPtr root_key = generate_key();
  CertificatePtr root = make_root(root_key.get());
  KeyPtr intermediate_key = generate_key();
  CertificatePtr intermediate =
      make_intermediate(intermediate_key.get(), root.get(), root_key.get());
  KeyPtr tls_key = generate_key();
  CertificatePtr tls_certificate =
      make_tls_certificate(tls_key.get(), root.get(), root_key.get());
};

} // namespace demo_ca::detail
