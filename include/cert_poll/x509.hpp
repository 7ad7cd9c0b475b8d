// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "cert_poll/error.hpp"

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

struct x509_st;
struct X509_req_st;

namespace cert_poll::x509 {

using Bytes = std::vector<unsigned char>;

// Decodes base64 in the standard or the URL-safe alphabet, with or without
// padding; white space (line breaks of PEM bodies) is ignored. Fails with
// ErrorKind::parse on any other character.
Result<Bytes> decode_base64(std::string_view text);

// Encodes in the standard alphabet with padding, on one line.
std::string encode_base64(const Bytes &data);

// Wraps DER in PEM armour with 64-character lines and a final newline.
std::string der_to_pem(const Bytes &der,
                       std::string_view label = "CERTIFICATE");

// A parsed X.509 certificate. A copy shares the parsed certificate, which
// no function here modifies, so copies may be used on several threads.
class Certificate {
public:
  static Result<Certificate> from_der(const Bytes &der);

  Certificate(const Certificate &other);
  Certificate &operator=(const Certificate &other);
  Certificate(Certificate &&) noexcept = default;
  Certificate &operator=(Certificate &&) noexcept = default;
  ~Certificate() = default;
  x509_st *get() const { return m_cert.get(); }
  const Bytes &der() const { return m_der; }

private:
  Certificate() = default;

  struct Deleter {
    void operator()(x509_st *cert) const;
  };
  std::unique_ptr<x509_st, Deleter> m_cert;
  Bytes m_der;
};

// Parsed certificates by DER, for the CA certificates that most chains of a
// run share: OpenSSL 3.0 spends about a million instructions decoding one
// certificate's public key. Thread-safe. It keeps at most max_entries
// certificates and parses any further one each time.
class CertificateCache {
public:
  static constexpr std::size_t max_entries = 64;

  // Returns the cached certificate for `der`, else parses and keeps it.
  Result<Certificate> from_der(const Bytes &der);

private:
  std::mutex m_mutex;
  std::map<Bytes, Certificate> m_entries;
};

// A parsed PKCS#10 certificate signing request.
class CertificateRequest {
public:
  // Parses the csr column: base64 DER without armour (either alphabet), or a
  // PEM "CERTIFICATE REQUEST" block.
  static Result<CertificateRequest> from_text(std::string_view text);
  X509_req_st *get() const { return m_request.get(); }

private:
  struct Deleter {
    void operator()(X509_req_st *request) const;
  };
  std::unique_ptr<X509_req_st, Deleter> m_request;
};

// Parses every CERTIFICATE block of a PEM text in order. Fails when there is
// none or one does not parse. With `issuers`, the blocks after the first are
// taken from that cache.
Result<std::vector<Certificate>>
parse_pem_chain(std::string_view pem, CertificateCache *issuers = nullptr);

// The serial number as lowercase hex, with one leading 0 when the digit count
// is odd.
std::string serial_hex(const Certificate &cert);

// The keyIdentifier of the Authority Key Identifier extension as lowercase
// hex; an empty string when the extension or the field is absent.
std::string authority_key_identifier_hex(const Certificate &cert);

// notBefore and notAfter as Unix seconds, UTC.
std::int64_t not_before_unix(const Certificate &cert);
std::int64_t not_after_unix(const Certificate &cert);

// The hex of the SHA-256 OCSP CertID of `leaf` (RFC 6960) with everything up
// to and including the issuerNameHash OCTET STRING header cut off:
// issuerNameHash, "0420", issuerKeyHash, then the DER of the serial INTEGER.
// This is the value acme2certifier stores in certificate.renewal_info.
Result<std::string> renewal_info(const Certificate &leaf,
                                 const Certificate &issuer);

// True when `cert`'s signature verifies with `issuer`'s public key.
bool is_signed_by(const Certificate &cert, const Certificate &issuer);

// True when the certificate's public key is the request's public key.
bool same_public_key(const Certificate &cert,
                     const CertificateRequest &request);

} // namespace cert_poll::x509
