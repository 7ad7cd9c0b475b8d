// SPDX-License-Identifier: Apache-2.0
#include "cert_poll/x509.hpp"

#include <algorithm>
#include <cstddef>
#include <ctime>

#include <climits>
#include <fmt/format.h>
#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

namespace cert_poll::x509 {

namespace {

// Quoted input in messages is cut to this many characters, so a huge
// malformed value does not flood the log.
constexpr std::size_t max_quoted_chars = 40;

std::string quote_cut(std::string_view text) {
  if (text.size() <= max_quoted_chars) {
    return std::string(text);
  }
  return std::string(text.substr(0, max_quoted_chars)) + "...";
}

// Returns the reason of the newest OpenSSL error and empties the thread's
// error queue, so that a later call does not report a stale error.
std::string take_openssl_error() {
  unsigned long code = ERR_peek_last_error();
  ERR_clear_error();
  const char *reason = code == 0 ? nullptr : ERR_reason_error_string(code);
  return reason == nullptr ? "unknown OpenSSL error" : reason;
}

std::string to_hex(const unsigned char *data, std::size_t size) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(size * 2);
  for (std::size_t i = 0; i < size; ++i) {
    out.push_back(digits[data[i] >> 4]);
    out.push_back(digits[data[i] & 0x0f]);
  }
  return out;
}

struct BioFree {
  void operator()(BIO *bio) const { BIO_free(bio); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;

struct OpensslFree {
  void operator()(void *data) const { OPENSSL_free(data); }
};

struct BignumFree {
  void operator()(BIGNUM *number) const { BN_free(number); }
};

struct CertIdFree {
  void operator()(OCSP_CERTID *id) const { OCSP_CERTID_free(id); }
};

bool is_base64_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' ||
         c == '\v';
}

bool is_standard_base64_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
         (c >= '0' && c <= '9') || c == '+' || c == '/';
}

// Names a character that is not in the alphabet. Bytes outside printable
// ASCII are shown as hex, because one byte of a UTF-8 sequence does not
// print.
std::string describe_invalid_char(char c) {
  auto byte = static_cast<unsigned char>(c);
  if (byte >= 0x20 && byte < 0x7f) {
    return fmt::format("character '{}' is not in the base64 alphabet", c);
  }
  return fmt::format("byte 0x{:02x} is not in the base64 alphabet", byte);
}

Error base64_error(std::string_view text,
                   std::size_t position,
                   std::string_view reason) {
  return Error{ErrorKind::parse,
               fmt::format("invalid base64 at position {} of '{}': {}",
                           position,
                           quote_cut(text),
                           reason)};
}

// Drops white space, maps the URL-safe alphabet to the standard one and
// strips padding, so that the result contains only standard alphabet
// characters. Padding is accepted only at the end.
Result<std::string> normalise_base64(std::string_view text) {
  std::string digits;
  digits.reserve(text.size());
  std::size_t padding = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (is_base64_space(c)) {
      continue;
    }
    if (c == '=') {
      ++padding;
      if (padding > 2) {
        return std::unexpected(
            base64_error(text, i, "more than two '=' padding characters"));
      }
      continue;
    }
    if (padding > 0) {
      return std::unexpected(
          base64_error(text, i, "data follows the '=' padding"));
    }
    if (c == '-') {
      c = '+';
    } else if (c == '_') {
      c = '/';
    } else if (!is_standard_base64_char(c)) {
      return std::unexpected(base64_error(text, i, describe_invalid_char(c)));
    }
    digits.push_back(c);
  }
  if (digits.size() % 4 == 1) {
    return std::unexpected(base64_error(
        text, text.size(), "the input is truncated (one digit left over)"));
  }
  if (padding > 0 && (digits.size() + padding) % 4 != 0) {
    return std::unexpected(base64_error(
        text, text.size(), "the '=' padding does not match the length"));
  }
  return digits;
}

struct PemBlock {
  std::string label;
  Bytes der;
};

Result<BioPtr> make_memory_bio(std::string_view text) {
  if (text.size() > static_cast<std::size_t>(INT_MAX)) {
    return make_error(
        ErrorKind::parse,
        fmt::format("the PEM text of {} bytes is too large", text.size()));
  }
  BioPtr bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
  if (bio == nullptr) {
    return make_error(
        ErrorKind::parse,
        fmt::format("BIO_new_mem_buf failed: {}", take_openssl_error()));
  }
  return bio;
}

// Reads every PEM block of `text` in order, whatever its label. Text
// outside the blocks is skipped, as OpenSSL's PEM reader does.
Result<std::vector<PemBlock>> read_pem_blocks(std::string_view text) {
  auto bio = make_memory_bio(text);
  if (!bio) {
    return std::unexpected(bio.error());
  }
  ERR_clear_error();
  std::vector<PemBlock> blocks;
  for (;;) {
    char *name = nullptr;
    char *header = nullptr;
    unsigned char *data = nullptr;
    long length = 0;
    int ok = PEM_read_bio(bio->get(), &name, &header, &data, &length);
    std::unique_ptr<char, OpensslFree> name_owner(name);
    std::unique_ptr<char, OpensslFree> header_owner(header);
    std::unique_ptr<unsigned char, OpensslFree> data_owner(data);
    if (ok != 1) {
      // PEM_R_NO_START_LINE means that no further "-----BEGIN" line
      // follows, so every block has been read.
      if (ERR_GET_REASON(ERR_peek_last_error()) == PEM_R_NO_START_LINE) {
        ERR_clear_error();
        return blocks;
      }
      return make_error(ErrorKind::parse,
                        fmt::format("PEM block {} is invalid: {}",
                                    blocks.size() + 1,
                                    take_openssl_error()));
    }
    blocks.push_back(
        PemBlock{name, Bytes(data, data + static_cast<std::size_t>(length))});
  }
}

// Rejects dates that OpenSSL cannot convert, so that the date getters of a
// parsed Certificate cannot fail.
bool has_valid_dates(const X509 *cert) {
  std::tm ignored{};
  return ASN1_TIME_to_tm(X509_get0_notBefore(cert), &ignored) == 1 &&
         ASN1_TIME_to_tm(X509_get0_notAfter(cert), &ignored) == 1;
}

std::int64_t to_unix_seconds(const ASN1_TIME *time) {
  std::tm utc{};
  // Certificate::from_der has checked that the conversion succeeds.
  ASN1_TIME_to_tm(time, &utc);
  return static_cast<std::int64_t>(timegm(&utc));
}

Result<X509_REQ *> parse_request_der(const Bytes &der) {
  if (der.size() > static_cast<std::size_t>(LONG_MAX)) {
    return make_error(
        ErrorKind::parse,
        fmt::format("the CSR DER of {} bytes is too large", der.size()));
  }
  ERR_clear_error();
  const unsigned char *cursor = der.data();
  X509_REQ *request =
      d2i_X509_REQ(nullptr, &cursor, static_cast<long>(der.size()));
  if (request == nullptr) {
    return make_error(ErrorKind::parse,
                      fmt::format("the CSR is not a PKCS#10 request ({})",
                                  take_openssl_error()));
  }
  auto used = static_cast<std::size_t>(cursor - der.data());
  if (used != der.size()) {
    X509_REQ_free(request);
    return make_error(ErrorKind::parse,
                      fmt::format("the CSR has {} bytes of trailing data after "
                                  "its DER encoding",
                                  der.size() - used));
  }
  return request;
}

Result<Bytes> request_der_from_pem(std::string_view text) {
  auto blocks = read_pem_blocks(text);
  if (!blocks) {
    return make_error(
        ErrorKind::parse,
        fmt::format("the CSR PEM does not parse: {}", blocks.error().message));
  }
  for (auto &block : *blocks) {
    if (block.label == PEM_STRING_X509_REQ ||
        block.label == PEM_STRING_X509_REQ_OLD) {
      return std::move(block.der);
    }
  }
  return make_error(ErrorKind::parse,
                    "the CSR PEM contains no 'CERTIFICATE REQUEST' block");
}

// The content of the CertID SEQUENCE after the AlgorithmIdentifier and the
// issuerNameHash OCTET STRING header, as hex.
Result<std::string> cert_id_tail_hex(const Bytes &der) {
  const unsigned char *cursor = der.data();
  long length = 0;
  int tag = 0;
  int tag_class = 0;
  auto invalid = [](std::string_view what) {
    return make_error(ErrorKind::parse,
                      fmt::format("the OCSP CertID has an unexpected "
                                  "structure: {}",
                                  what));
  };

  int flags = ASN1_get_object(
      &cursor, &length, &tag, &tag_class, static_cast<long>(der.size()));
  if ((flags & 0x80) != 0 || tag != V_ASN1_SEQUENCE) {
    return invalid("no outer SEQUENCE");
  }
  const unsigned char *end = cursor + length;

  flags = ASN1_get_object(&cursor, &length, &tag, &tag_class, end - cursor);
  if ((flags & 0x80) != 0 || tag != V_ASN1_SEQUENCE) {
    return invalid("no AlgorithmIdentifier");
  }
  cursor += length;

  flags = ASN1_get_object(&cursor, &length, &tag, &tag_class, end - cursor);
  if ((flags & 0x80) != 0 || tag != V_ASN1_OCTET_STRING || length != 32) {
    return invalid("issuerNameHash is not a 32-byte OCTET STRING");
  }
  return to_hex(cursor, static_cast<std::size_t>(end - cursor));
}

} // namespace

Result<Bytes> decode_base64(std::string_view text) {
  auto digits = normalise_base64(text);
  if (!digits) {
    return std::unexpected(digits.error());
  }
  // EVP_DecodeBlock wants whole groups of four, so the padding goes back on
  // and the zero bytes it stands for come off the output.
  std::size_t missing = (4 - digits->size() % 4) % 4;
  digits->append(missing, '=');
  if (digits->size() > static_cast<std::size_t>(INT_MAX)) {
    return make_error(
        ErrorKind::parse,
        fmt::format("the base64 input of {} bytes is too large", text.size()));
  }
  Bytes out(digits->size() / 4 * 3);
  int length =
      EVP_DecodeBlock(out.data(),
                      reinterpret_cast<const unsigned char *>(digits->data()),
                      static_cast<int>(digits->size()));
  if (length < 0) {
    return make_error(ErrorKind::parse,
                      fmt::format("invalid base64 '{}'", quote_cut(text)));
  }
  out.resize(static_cast<std::size_t>(length) - missing);
  return out;
}

std::string encode_base64(const Bytes &data) {
  // EVP_EncodeBlock takes an int length, so the input goes in chunks whose
  // size is a multiple of 3, which keeps padding out of all but the last.
  constexpr std::size_t chunk_size = 3 * 1024 * 1024;
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  // Four output characters per three input bytes, plus the NUL that
  // EVP_EncodeBlock writes.
  std::size_t block_input = std::min(chunk_size, data.size());
  std::string block((block_input + 2) / 3 * 4 + 1, '\0');
  for (std::size_t offset = 0; offset < data.size(); offset += chunk_size) {
    std::size_t size = std::min(chunk_size, data.size() - offset);
    int length =
        EVP_EncodeBlock(reinterpret_cast<unsigned char *>(block.data()),
                        data.data() + offset,
                        static_cast<int>(size));
    out.append(block.data(), static_cast<std::size_t>(length));
  }
  return out;
}

std::string der_to_pem(const Bytes &der, std::string_view label) {
  const std::string name(label);
  BioPtr bio(BIO_new(BIO_s_mem()));
  // PEM_write_bio wraps the base64 body at 64 characters.
  if (bio == nullptr || PEM_write_bio(bio.get(),
                                      name.c_str(),
                                      "",
                                      der.data(),
                                      static_cast<long>(der.size())) <= 0) {
    ERR_clear_error();
    return {};
  }
  char *data = nullptr;
  long length = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(length));
}

void Certificate::Deleter::operator()(x509_st *cert) const {
  X509_free(cert);
}

Certificate::Certificate(const Certificate &other) : m_der(other.m_der) {
  X509_up_ref(other.m_cert.get());
  m_cert.reset(other.m_cert.get());
}

Certificate &Certificate::operator=(const Certificate &other) {
  if (this != &other) {
    Certificate copy(other);
    *this = std::move(copy);
  }
  return *this;
}

Result<Certificate> CertificateCache::from_der(const Bytes &der) {
  {
    const std::lock_guard lock(m_mutex);
    const auto found = m_entries.find(der);
    if (found != m_entries.end()) {
      return found->second;
    }
  }
  // Parsing runs outside the lock. Two threads may parse the same DER at
  // once, and the second result is then dropped.
  auto cert = Certificate::from_der(der);
  if (!cert) {
    return cert;
  }
  const std::lock_guard lock(m_mutex);
  if (m_entries.size() < max_entries) {
    m_entries.emplace(der, *cert);
  }
  return cert;
}

Result<Certificate> Certificate::from_der(const Bytes &der) {
  if (der.size() > static_cast<std::size_t>(LONG_MAX)) {
    return make_error(
        ErrorKind::parse,
        fmt::format("the certificate DER of {} bytes is too large",
                    der.size()));
  }
  ERR_clear_error();
  const unsigned char *cursor = der.data();
  Certificate cert;
  cert.m_cert.reset(d2i_X509(nullptr, &cursor, static_cast<long>(der.size())));
  if (cert.m_cert == nullptr) {
    return make_error(ErrorKind::parse,
                      fmt::format("the DER is not an X.509 certificate ({})",
                                  take_openssl_error()));
  }
  auto used = static_cast<std::size_t>(cursor - der.data());
  if (used != der.size()) {
    return make_error(ErrorKind::parse,
                      fmt::format("the certificate has {} bytes of trailing "
                                  "data after its DER encoding",
                                  der.size() - used));
  }
  if (!has_valid_dates(cert.m_cert.get())) {
    ERR_clear_error();
    return make_error(ErrorKind::parse,
                      "the certificate's notBefore or notAfter is not a valid "
                      "time");
  }
  cert.m_der = der;
  return cert;
}

void CertificateRequest::Deleter::operator()(X509_req_st *request) const {
  X509_REQ_free(request);
}

Result<CertificateRequest>
CertificateRequest::from_text(std::string_view text) {
  if (text.find_first_not_of(" \t\r\n") == std::string_view::npos) {
    return make_error(ErrorKind::parse, "the CSR is empty");
  }
  Result<Bytes> der = text.find("-----BEGIN") != std::string_view::npos
                          ? request_der_from_pem(text)
                          : decode_base64(text);
  if (!der) {
    return std::unexpected(der.error());
  }
  auto parsed = parse_request_der(*der);
  if (!parsed) {
    return std::unexpected(parsed.error());
  }
  CertificateRequest request;
  request.m_request.reset(*parsed);
  return request;
}

Result<std::vector<Certificate>> parse_pem_chain(std::string_view pem,
                                                 CertificateCache *issuers) {
  auto blocks = read_pem_blocks(pem);
  if (!blocks) {
    return std::unexpected(blocks.error());
  }
  std::vector<Certificate> chain;
  for (const auto &block : *blocks) {
    if (block.label != PEM_STRING_X509) {
      continue;
    }
    auto cert = issuers != nullptr && !chain.empty()
                    ? issuers->from_der(block.der)
                    : Certificate::from_der(block.der);
    if (!cert) {
      return make_error(
          ErrorKind::parse,
          fmt::format("certificate {} of the chain is invalid: {}",
                      chain.size() + 1,
                      cert.error().message));
    }
    chain.push_back(std::move(*cert));
  }
  if (chain.empty()) {
    return make_error(ErrorKind::parse,
                      fmt::format("no 'CERTIFICATE' PEM block found in '{}'",
                                  quote_cut(pem)));
  }
  return chain;
}

std::string serial_hex(const Certificate &cert) {
  std::unique_ptr<BIGNUM, BignumFree> number(
      ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert.get()), nullptr));
  if (number == nullptr) {
    ERR_clear_error();
    return {};
  }
  std::unique_ptr<char, OpensslFree> text(BN_bn2hex(number.get()));
  if (text == nullptr) {
    ERR_clear_error();
    return {};
  }
  std::string hex(text.get());
  // RFC 5280 forbids negative serials, but some CAs issue them. Such a
  // serial keeps its sign in front of the padded digits.
  std::string sign;
  if (!hex.empty() && hex.front() == '-') {
    sign = "-";
    hex.erase(0, 1);
  }
  for (char &c : hex) {
    if (c >= 'A' && c <= 'F') {
      c = static_cast<char>(c - 'A' + 'a');
    }
  }
  if (hex.size() % 2 != 0) {
    hex.insert(0, 1, '0');
  }
  return sign + hex;
}

std::string authority_key_identifier_hex(const Certificate &cert) {
  const ASN1_OCTET_STRING *key_id = X509_get0_authority_key_id(cert.get());
  if (key_id == nullptr) {
    return {};
  }
  return to_hex(ASN1_STRING_get0_data(key_id),
                static_cast<std::size_t>(ASN1_STRING_length(key_id)));
}

std::int64_t not_before_unix(const Certificate &cert) {
  return to_unix_seconds(X509_get0_notBefore(cert.get()));
}

std::int64_t not_after_unix(const Certificate &cert) {
  return to_unix_seconds(X509_get0_notAfter(cert.get()));
}

Result<std::string> renewal_info(const Certificate &leaf,
                                 const Certificate &issuer) {
  ERR_clear_error();
  std::unique_ptr<OCSP_CERTID, CertIdFree> cert_id(
      OCSP_cert_to_id(EVP_sha256(), leaf.get(), issuer.get()));
  if (cert_id == nullptr) {
    return make_error(
        ErrorKind::parse,
        fmt::format("OCSP_cert_to_id failed: {}", take_openssl_error()));
  }
  int length = i2d_OCSP_CERTID(cert_id.get(), nullptr);
  if (length <= 0) {
    return make_error(
        ErrorKind::parse,
        fmt::format("i2d_OCSP_CERTID failed: {}", take_openssl_error()));
  }
  Bytes der(static_cast<std::size_t>(length));
  unsigned char *out = der.data();
  i2d_OCSP_CERTID(cert_id.get(), &out);
  return cert_id_tail_hex(der);
}

bool is_signed_by(const Certificate &cert, const Certificate &issuer) {
  EVP_PKEY *key = X509_get0_pubkey(issuer.get());
  return key != nullptr && X509_verify(cert.get(), key) == 1;
}

bool same_public_key(const Certificate &cert,
                     const CertificateRequest &request) {
  EVP_PKEY *cert_key = X509_get0_pubkey(cert.get());
  EVP_PKEY *request_key = X509_REQ_get0_pubkey(request.get());
  bool same = cert_key != nullptr && request_key != nullptr &&
              EVP_PKEY_eq(cert_key, request_key) == 1;
  ERR_clear_error();
  return same;
}

} // namespace cert_poll::x509
