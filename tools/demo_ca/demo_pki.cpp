// SPDX-License-Identifier: Apache-2.0
#include "demo_pki.hpp"

#include <array>
#include <stdexcept>
#include <string_view>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

namespace demo_ca::detail {

namespace {

using KeyContextPtr =
    std::unique_ptr<EVP_PKEY_CTX, OpensslFree<EVP_PKEY_CTX_free>>;
using NamePtr = std::unique_ptr<X509_NAME, OpensslFree<X509_NAME_free>>;
using BignumPtr = std::unique_ptr<BIGNUM, OpensslFree<BN_free>>;
using BioPtr = std::unique_ptr<BIO, OpensslFree<BIO_free_all>>;
using ExtensionPtr =
    std::unique_ptr<X509_EXTENSION, OpensslFree<X509_EXTENSION_free>>;

struct ExtensionStackFree {
  void operator()(STACK_OF(X509_EXTENSION) * extensions) const {
    sk_X509_EXTENSION_pop_free(extensions, X509_EXTENSION_free);
  }
};
using ExtensionStackPtr =
    std::unique_ptr<STACK_OF(X509_EXTENSION), ExtensionStackFree>;

constexpr long seconds_per_day = 24L * 60 * 60;
constexpr long ca_validity_seconds = 365 * seconds_per_day;
constexpr long tls_validity_seconds = 30 * seconds_per_day;
constexpr long leaf_validity_seconds = 90 * seconds_per_day;
// Certificates start one minute in the past so that a client whose clock is
// slightly behind still accepts them.
constexpr long backdate_seconds = 60;
constexpr std::size_t serial_bytes = 16;

[[noreturn]] void throw_openssl_error(std::string_view call) {
  std::array<char, 256> reason{};
  ERR_error_string_n(ERR_get_error(), reason.data(), reason.size());
  ERR_clear_error();
  throw std::runtime_error("OpenSSL call '" + std::string(call) +
                           "' failed in the demo CA: " + reason.data());
}

void check(bool success, std::string_view call) {
  if (!success) {
    throw_openssl_error(call);
  }
}

NamePtr make_name(const std::string &common_name) {
  NamePtr name(X509_NAME_new());
  check(name != nullptr, "X509_NAME_new");
  check(X509_NAME_add_entry_by_txt(
            name.get(),
            "CN",
            MBSTRING_UTF8,
            reinterpret_cast<const unsigned char *>(common_name.c_str()),
            -1,
            -1,
            0) == 1,
        "X509_NAME_add_entry_by_txt");
  return name;
}

// Sets a random positive serial number of `serial_bytes` bytes, below the
// 20-octet limit that X.509 profiles set for serial numbers.
void set_random_serial(X509 *certificate) {
  std::array<unsigned char, serial_bytes> bytes{};
  check(RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) == 1,
        "RAND_bytes");
  // Clearing the top bit keeps the DER INTEGER positive, and setting the
  // next one keeps all 16 bytes significant.
  bytes[0] = static_cast<unsigned char>((bytes[0] & 0x7f) | 0x40);
  BignumPtr number(
      BN_bin2bn(bytes.data(), static_cast<int>(bytes.size()), nullptr));
  check(number != nullptr, "BN_bin2bn");
  check(BN_to_ASN1_INTEGER(number.get(), X509_get_serialNumber(certificate)) !=
            nullptr,
        "BN_to_ASN1_INTEGER");
}

// Creates an unsigned X.509 v3 certificate for `subject` and `public_key`.
// A null `issuer` makes it self-issued.
CertificatePtr new_certificate(const X509_NAME *subject,
                               EVP_PKEY *public_key,
                               const X509 *issuer,
                               long validity_seconds) {
  CertificatePtr certificate(X509_new());
  check(certificate != nullptr, "X509_new");
  check(X509_set_version(certificate.get(), X509_VERSION_3) == 1,
        "X509_set_version");
  set_random_serial(certificate.get());
  check(X509_gmtime_adj(X509_getm_notBefore(certificate.get()),
                        -backdate_seconds) != nullptr,
        "X509_gmtime_adj");
  check(X509_gmtime_adj(X509_getm_notAfter(certificate.get()),
                        validity_seconds) != nullptr,
        "X509_gmtime_adj");
  check(X509_set_subject_name(certificate.get(), subject) == 1,
        "X509_set_subject_name");
  const X509_NAME *issuer_name =
      issuer == nullptr ? subject : X509_get_subject_name(issuer);
  check(X509_set_issuer_name(certificate.get(), issuer_name) == 1,
        "X509_set_issuer_name");
  check(X509_set_pubkey(certificate.get(), public_key) == 1, "X509_set_pubkey");
  return certificate;
}

// Adds an extension written in the openssl.cnf syntax, for example
// "critical,CA:TRUE". A null `issuer` means the certificate is self-issued.
void add_extension(X509 *certificate,
                   X509 *issuer,
                   int nid,
                   const char *value) {
  X509V3_CTX context;
  X509V3_set_ctx(&context,
                 issuer == nullptr ? certificate : issuer,
                 certificate,
                 nullptr,
                 nullptr,
                 0);
  ExtensionPtr extension(X509V3_EXT_conf_nid(nullptr, &context, nid, value));
  check(extension != nullptr, "X509V3_EXT_conf_nid");
  check(X509_add_ext(certificate, extension.get(), -1) == 1, "X509_add_ext");
}

void sign(X509 *certificate, EVP_PKEY *key) {
  check(X509_sign(certificate, key, EVP_sha256()) > 0, "X509_sign");
}

// Copies the CSR's subjectAltName extension, if it has one, unchanged.
void copy_subject_alt_name(X509_REQ *csr, X509 *certificate) {
  ExtensionStackPtr extensions(X509_REQ_get_extensions(csr));
  if (extensions == nullptr) {
    return;
  }
  int index = X509v3_get_ext_by_NID(extensions.get(), NID_subject_alt_name, -1);
  if (index < 0) {
    return;
  }
  check(X509_add_ext(
            certificate, X509v3_get_ext(extensions.get(), index), -1) == 1,
        "X509_add_ext");
}

} // namespace

KeyPtr generate_key() {
  KeyContextPtr context(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
  check(context != nullptr, "EVP_PKEY_CTX_new_from_name");
  check(EVP_PKEY_keygen_init(context.get()) == 1, "EVP_PKEY_keygen_init");
  check(EVP_PKEY_CTX_set_group_name(context.get(), "P-256") == 1,
        "EVP_PKEY_CTX_set_group_name");
  EVP_PKEY *key = nullptr;
  check(EVP_PKEY_generate(context.get(), &key) == 1, "EVP_PKEY_generate");
  return KeyPtr(key);
}

CertificatePtr make_root(EVP_PKEY *key) {
  NamePtr name = make_name("cert_poll demo root CA");
  CertificatePtr root =
      new_certificate(name.get(), key, nullptr, ca_validity_seconds);
  add_extension(root.get(), nullptr, NID_basic_constraints, "critical,CA:TRUE");
  add_extension(
      root.get(), nullptr, NID_key_usage, "critical,keyCertSign,cRLSign");
  add_extension(root.get(), nullptr, NID_subject_key_identifier, "hash");
  sign(root.get(), key);
  return root;
}

CertificatePtr
make_intermediate(EVP_PKEY *key, X509 *root, EVP_PKEY *root_key) {
  NamePtr name = make_name("cert_poll demo issuing CA");
  CertificatePtr intermediate =
      new_certificate(name.get(), key, root, ca_validity_seconds);
  add_extension(intermediate.get(),
                root,
                NID_basic_constraints,
                "critical,CA:TRUE,pathlen:0");
  add_extension(
      intermediate.get(), root, NID_key_usage, "critical,keyCertSign,cRLSign");
  add_extension(intermediate.get(), root, NID_subject_key_identifier, "hash");
  add_extension(
      intermediate.get(), root, NID_authority_key_identifier, "keyid:always");
  sign(intermediate.get(), root_key);
  return intermediate;
}

CertificatePtr
make_tls_certificate(EVP_PKEY *key, X509 *root, EVP_PKEY *root_key) {
  NamePtr name = make_name("localhost");
  CertificatePtr certificate =
      new_certificate(name.get(), key, root, tls_validity_seconds);
  X509 *tls = certificate.get();
  add_extension(tls, root, NID_basic_constraints, "critical,CA:FALSE");
  add_extension(tls, root, NID_key_usage, "critical,digitalSignature");
  add_extension(tls, root, NID_ext_key_usage, "serverAuth");
  add_extension(
      tls, root, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1,IP:::1");
  add_extension(tls, root, NID_subject_key_identifier, "hash");
  add_extension(tls, root, NID_authority_key_identifier, "keyid:always");
  sign(tls, root_key);
  return certificate;
}

CertificatePtr sign_leaf(X509_REQ *csr,
                         EVP_PKEY *public_key,
                         X509 *intermediate,
                         EVP_PKEY *intermediate_key) {
  CertificatePtr certificate = new_certificate(X509_REQ_get_subject_name(csr),
                                               public_key,
                                               intermediate,
                                               leaf_validity_seconds);
  X509 *leaf = certificate.get();
  add_extension(leaf, intermediate, NID_basic_constraints, "critical,CA:FALSE");
  add_extension(leaf, intermediate, NID_key_usage, "critical,digitalSignature");
  add_extension(leaf, intermediate, NID_ext_key_usage, "serverAuth,clientAuth");
  copy_subject_alt_name(csr, leaf);
  add_extension(leaf, intermediate, NID_subject_key_identifier, "hash");
  add_extension(
      leaf, intermediate, NID_authority_key_identifier, "keyid:always");
  sign(leaf, intermediate_key);
  return certificate;
}

std::vector<unsigned char> to_der(X509 *certificate) {
  int length = i2d_X509(certificate, nullptr);
  check(length > 0, "i2d_X509");
  std::vector<unsigned char> der(static_cast<std::size_t>(length));
  unsigned char *cursor = der.data();
  check(i2d_X509(certificate, &cursor) == length, "i2d_X509");
  return der;
}

std::string to_pem(X509 *certificate) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  check(bio != nullptr, "BIO_new");
  check(PEM_write_bio_X509(bio.get(), certificate) == 1, "PEM_write_bio_X509");
  char *data = nullptr;
  long length = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(length));
}

std::string encode_base64(const unsigned char *data, std::size_t size) {
  // EVP_EncodeBlock writes 4 characters per 3 bytes and a terminating NUL.
  std::string text(4 * ((size + 2) / 3) + 1, '\0');
  int length = EVP_EncodeBlock(reinterpret_cast<unsigned char *>(text.data()),
                               data,
                               static_cast<int>(size));
  text.resize(static_cast<std::size_t>(length));
  return text;
}

std::string encode_base64(const std::vector<unsigned char> &bytes) {
  return encode_base64(bytes.data(), bytes.size());
}

std::string encode_base64(const std::string &text) {
  return encode_base64(reinterpret_cast<const unsigned char *>(text.data()),
                       text.size());
}

CsrPtr parse_csr(const std::string &id,
                 const std::vector<unsigned char> &csr_der) {
  const unsigned char *cursor = csr_der.data();
  CsrPtr csr(d2i_X509_REQ(nullptr, &cursor, static_cast<long>(csr_der.size())));
  if (csr == nullptr) {
    ERR_clear_error();
    throw std::invalid_argument("invalid CSR for request '" + id +
                                "': it does not parse as a DER PKCS#10 "
                                "request; check that it is complete and not "
                                "PEM");
  }
  EVP_PKEY *public_key = X509_REQ_get0_pubkey(csr.get());
  if (public_key == nullptr || X509_REQ_verify(csr.get(), public_key) != 1) {
    ERR_clear_error();
    throw std::invalid_argument("invalid CSR for request '" + id +
                                "': its signature does not verify with its "
                                "own public key");
  }
  return csr;
}

} // namespace demo_ca::detail
