// SPDX-License-Identifier: Apache-2.0
#include "cert_poll/x509.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <memory>
#include <string>

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "support/test_support.hpp"

namespace {

using cert_poll::ErrorKind;
using cert_poll::x509::Bytes;
using cert_poll::x509::Certificate;
using cert_poll::x509::CertificateRequest;
using test_support::run_command;
using test_support::shell_quote;

std::string lowercase(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) {
    return static_cast<char>(std::tolower(c));
  });
  return text;
}

std::string strip(std::string text, const std::string &characters) {
  std::erase_if(
      text, [&](char c) { return characters.find(c) != std::string::npos; });
  return text;
}

Bytes to_bytes(const std::string &text) {
  return Bytes(text.begin(), text.end());
}

std::string hex(const unsigned char *data, std::size_t size) {
  std::string out;
  char digits[3];
  for (std::size_t i = 0; i < size; ++i) {
    std::snprintf(digits, sizeof digits, "%02x", data[i]);
    out += digits;
  }
  return out;
}

// Runs `openssl args` in the folder and returns its standard output.
std::string openssl(const std::filesystem::path &dir, const std::string &args) {
  auto result =
      run_command("cd " + shell_quote(dir.string()) + " && openssl " + args);
  EXPECT_EQ(result.exit_status, 0) << "openssl " << args;
  return result.output;
}

// The DER of a PEM certificate file, converted by the openssl command line.
Bytes der_of(const std::filesystem::path &dir, const std::string &name) {
  openssl(dir,
          "x509 -in " + shell_quote(name + ".pem") + " -outform DER -out " +
              shell_quote(name + ".der"));
  return to_bytes(test_support::read_file(dir / (name + ".der")));
}

// The value after `key=` in the output of `openssl x509 -noout -<key>`.
std::string openssl_field(const std::filesystem::path &dir,
                          const std::string &name,
                          const std::string &key) {
  std::string line = openssl(
      dir, "x509 -in " + shell_quote(name + ".pem") + " -noout -" + key);
  return strip(line.substr(line.find('=') + 1), "\n");
}

std::int64_t openssl_date(const std::filesystem::path &dir,
                          const std::string &name,
                          const std::string &key) {
  std::string date = openssl_field(dir, name, key);
  auto result = run_command("date -u -d " + shell_quote(date) + " +%s");
  EXPECT_EQ(result.exit_status, 0) << date;
  return std::stoll(result.output);
}

Certificate parse_file(const std::filesystem::path &dir,
                       const std::string &name) {
  auto cert = Certificate::from_der(der_of(dir, name));
  EXPECT_TRUE(cert.has_value()) << cert.error().message;
  return std::move(*cert);
}

// One PKI for the whole suite, because the openssl runs take a while.
class X509Test : public ::testing::Test {
protected:
  static void SetUpTestSuite() {
    s_dir = std::make_unique<test_support::TempDir>();
    s_pki = std::make_unique<test_support::TestPki>(
        test_support::make_test_pki(s_dir->path()));
    namespace ca = test_support::openssl_ca;
    ca::sign_request(
        s_dir->path(), "direct", s_pki->leaf_request.csr_der, "root", "0x80");
    ca::sign_request(s_dir->path(),
                     "bare",
                     s_pki->leaf_request.csr_der,
                     "intermediate",
                     "0",
                     "bare_ext");
  }
  static void TearDownTestSuite() {
    s_pki.reset();
    s_dir.reset();
  }

  static const std::filesystem::path &dir() { return s_dir->path(); }
  static const test_support::TestPki &pki() { return *s_pki; }

private:
  static inline std::unique_ptr<test_support::TempDir> s_dir;
  static inline std::unique_ptr<test_support::TestPki> s_pki;
};

// 0xfb 0xff 0xbf uses the two alphabet-specific digits, and 0x01 needs padding.
const Bytes sample_bytes = {0xfb, 0xff, 0xbf, 0x01};

TEST(Base64, DecodesUrlSafeWithoutPadding) {
  auto decoded = cert_poll::x509::decode_base64("-_-_AQ");
  ASSERT_TRUE(decoded.has_value()) << decoded.error().message;
  EXPECT_EQ(*decoded, sample_bytes);
}

TEST(Base64, DecodesStandardWithPadding) {
  auto decoded = cert_poll::x509::decode_base64("+/+/AQ==");
  ASSERT_TRUE(decoded.has_value()) << decoded.error().message;
  EXPECT_EQ(*decoded, sample_bytes);
}

TEST(Base64, IgnoresWhiteSpace) {
  auto decoded = cert_poll::x509::decode_base64(" +/+/\r\nAQ\n==\n");
  ASSERT_TRUE(decoded.has_value()) << decoded.error().message;
  EXPECT_EQ(*decoded, sample_bytes);
}

TEST(Base64, DecodesEmpty) {
  auto decoded = cert_poll::x509::decode_base64("");
  ASSERT_TRUE(decoded.has_value()) << decoded.error().message;
  EXPECT_TRUE(decoded->empty());
}

TEST(Base64, RejectsGarbage) {
  auto decoded = cert_poll::x509::decode_base64("abc*defg");
  ASSERT_FALSE(decoded.has_value());
  EXPECT_EQ(decoded.error().kind, ErrorKind::parse);
  EXPECT_NE(decoded.error().message.find("position 3"), std::string::npos)
      << decoded.error().message;
  EXPECT_NE(decoded.error().message.find("'*'"), std::string::npos)
      << decoded.error().message;
}

TEST(Base64, RejectsDataAfterPadding) {
  auto decoded = cert_poll::x509::decode_base64("AQ==AQ==");
  ASSERT_FALSE(decoded.has_value());
  EXPECT_EQ(decoded.error().kind, ErrorKind::parse);
}

TEST(Base64, RejectsWrongPadding) {
  auto decoded = cert_poll::x509::decode_base64("AQ=");
  ASSERT_FALSE(decoded.has_value());
  EXPECT_EQ(decoded.error().kind, ErrorKind::parse);
}

TEST(Base64, RejectsTruncatedInput) {
  auto decoded = cert_poll::x509::decode_base64("AQIDB");
  ASSERT_FALSE(decoded.has_value());
  EXPECT_EQ(decoded.error().kind, ErrorKind::parse);
}

TEST(Base64, CapsQuotedInput) {
  std::string huge(100000, 'A');
  huge += '!';
  auto decoded = cert_poll::x509::decode_base64(huge);
  ASSERT_FALSE(decoded.has_value());
  EXPECT_LT(decoded.error().message.size(), 200U) << decoded.error().message;
}

TEST(Base64, EncodesStandardWithPadding) {
  EXPECT_EQ(cert_poll::x509::encode_base64(sample_bytes), "+/+/AQ==");
}

TEST(Base64, EncodesEmpty) {
  EXPECT_EQ(cert_poll::x509::encode_base64({}), "");
}

TEST_F(X509Test, EncodeMatchesOpenssl) {
  Bytes der = der_of(dir(), "leaf");
  std::string expected = openssl(dir(), "base64 -A -in leaf.der");
  EXPECT_EQ(cert_poll::x509::encode_base64(der), expected);
}

// The input spans more than one chunk of the encoder.
TEST_F(X509Test, EncodeLargeInputMatchesOpenssl) {
  Bytes data(7 * 1024 * 1024 + 1);
  for (std::size_t i = 0; i < data.size(); ++i) {
    data[i] = static_cast<unsigned char>(i * 7 + i / 251);
  }
  test_support::write_file(dir() / "large.bin",
                           std::string(data.begin(), data.end()));
  std::string expected = openssl(dir(), "base64 -A -in large.bin");
  std::string encoded = cert_poll::x509::encode_base64(data);
  EXPECT_EQ(encoded.size(), expected.size());
  EXPECT_TRUE(encoded == expected);
  auto decoded = cert_poll::x509::decode_base64(encoded);
  ASSERT_TRUE(decoded.has_value()) << decoded.error().message;
  EXPECT_TRUE(*decoded == data);
}

TEST_F(X509Test, DerToPemMatchesOpenssl) {
  EXPECT_EQ(cert_poll::x509::der_to_pem(der_of(dir(), "leaf")), pki().leaf_pem);
}

TEST_F(X509Test, DerToPemUsesLabel) {
  std::string pem = cert_poll::x509::der_to_pem(sample_bytes, "X");
  EXPECT_EQ(pem, "-----BEGIN X-----\n+/+/AQ==\n-----END X-----\n");
}

TEST_F(X509Test, FromDerKeepsDer) {
  Bytes der = der_of(dir(), "leaf");
  auto cert = Certificate::from_der(der);
  ASSERT_TRUE(cert.has_value()) << cert.error().message;
  EXPECT_EQ(cert->der(), der);
}

TEST_F(X509Test, FromDerRejectsTrailingData) {
  Bytes der = der_of(dir(), "leaf");
  der.push_back(0x00);
  auto cert = Certificate::from_der(der);
  ASSERT_FALSE(cert.has_value());
  EXPECT_EQ(cert.error().kind, ErrorKind::parse);
  EXPECT_NE(cert.error().message.find("trailing"), std::string::npos)
      << cert.error().message;
}

TEST(Certificate, FromDerRejectsGarbage) {
  auto cert = Certificate::from_der(to_bytes("not a certificate"));
  ASSERT_FALSE(cert.has_value());
  EXPECT_EQ(cert.error().kind, ErrorKind::parse);
}

TEST(Certificate, FromDerRejectsEmpty) {
  auto cert = Certificate::from_der({});
  ASSERT_FALSE(cert.has_value());
  EXPECT_EQ(cert.error().kind, ErrorKind::parse);
}

TEST_F(X509Test, ParsePemChainKeepsOrder) {
  auto chain =
      cert_poll::x509::parse_pem_chain("leading text\n" + pki().leaf_pem +
                                       pki().intermediate_pem + pki().root_pem);
  ASSERT_TRUE(chain.has_value()) << chain.error().message;
  ASSERT_EQ(chain->size(), 3U);
  EXPECT_EQ((*chain)[0].der(), der_of(dir(), "leaf"));
  EXPECT_EQ((*chain)[1].der(), der_of(dir(), "intermediate"));
  EXPECT_EQ((*chain)[2].der(), der_of(dir(), "root"));
}

TEST_F(X509Test, ParsePemChainSkipsOtherBlocks) {
  std::string key_block =
      cert_poll::x509::der_to_pem(sample_bytes, "PRIVATE KEY");
  auto chain = cert_poll::x509::parse_pem_chain(key_block + pki().leaf_pem);
  ASSERT_TRUE(chain.has_value()) << chain.error().message;
  EXPECT_EQ(chain->size(), 1U);
}

TEST_F(X509Test, CertificateCopySharesParse) {
  auto cert = Certificate::from_der(der_of(dir(), "leaf"));
  ASSERT_TRUE(cert.has_value()) << cert.error().message;
  Certificate copy = *cert;
  EXPECT_EQ(copy.get(), cert->get());
  EXPECT_EQ(copy.der(), cert->der());
}

TEST_F(X509Test, CertificateCacheParsesOnce) {
  cert_poll::x509::CertificateCache cache;
  auto first = cache.from_der(der_of(dir(), "intermediate"));
  auto second = cache.from_der(der_of(dir(), "intermediate"));
  auto other = cache.from_der(der_of(dir(), "root"));
  ASSERT_TRUE(first.has_value()) << first.error().message;
  ASSERT_TRUE(second.has_value()) << second.error().message;
  ASSERT_TRUE(other.has_value()) << other.error().message;
  EXPECT_EQ(first->get(), second->get());
  EXPECT_NE(first->get(), other->get());
  EXPECT_EQ(other->der(), der_of(dir(), "root"));
}

TEST(CertificateCache, RejectsGarbage) {
  cert_poll::x509::CertificateCache cache;
  auto cert = cache.from_der(to_bytes("not a certificate"));
  ASSERT_FALSE(cert.has_value());
  EXPECT_EQ(cert.error().kind, ErrorKind::parse);
}

TEST_F(X509Test, ParsePemChainWithCache) {
  cert_poll::x509::CertificateCache cache;
  const std::string pem =
      pki().leaf_pem + pki().intermediate_pem + pki().root_pem;
  auto first = cert_poll::x509::parse_pem_chain(pem, &cache);
  auto second = cert_poll::x509::parse_pem_chain(pem, &cache);
  ASSERT_TRUE(first.has_value()) << first.error().message;
  ASSERT_TRUE(second.has_value()) << second.error().message;
  ASSERT_EQ(second->size(), 3U);
  // The leaf is parsed each time, the CA certificates come from the cache.
  EXPECT_NE((*first)[0].get(), (*second)[0].get());
  EXPECT_EQ((*first)[1].get(), (*second)[1].get());
  EXPECT_EQ((*first)[2].get(), (*second)[2].get());
  EXPECT_EQ((*second)[1].der(), der_of(dir(), "intermediate"));
}

TEST(ParsePemChain, RejectsNoBlock) {
  auto chain = cert_poll::x509::parse_pem_chain("no pem here");
  ASSERT_FALSE(chain.has_value());
  EXPECT_EQ(chain.error().kind, ErrorKind::parse);
}

TEST_F(X509Test, ParsePemChainNamesInvalidCertificate) {
  std::string bad = cert_poll::x509::der_to_pem(to_bytes("not DER"));
  auto chain = cert_poll::x509::parse_pem_chain(pki().leaf_pem + bad);
  ASSERT_FALSE(chain.has_value());
  EXPECT_EQ(chain.error().kind, ErrorKind::parse);
  EXPECT_NE(chain.error().message.find("certificate 2 of the chain"),
            std::string::npos)
      << chain.error().message;
}

TEST_F(X509Test, ParsePemChainNamesInvalidBlock) {
  std::string bad = "-----BEGIN CERTIFICATE-----\n*bad*\n"
                    "-----END CERTIFICATE-----\n";
  auto chain = cert_poll::x509::parse_pem_chain(pki().leaf_pem + bad);
  ASSERT_FALSE(chain.has_value());
  EXPECT_EQ(chain.error().kind, ErrorKind::parse);
  EXPECT_NE(chain.error().message.find("PEM block 2"), std::string::npos)
      << chain.error().message;
}

TEST_F(X509Test, RequestFromStandardBase64) {
  auto request = CertificateRequest::from_text(pki().leaf_request.csr_base64);
  ASSERT_TRUE(request.has_value()) << request.error().message;
  EXPECT_NE(request->get(), nullptr);
}

TEST_F(X509Test, RequestFromUrlSafeBase64) {
  std::string text = strip(pki().leaf_request.csr_base64, "=");
  std::replace(text.begin(), text.end(), '+', '-');
  std::replace(text.begin(), text.end(), '/', '_');
  auto request = CertificateRequest::from_text(text);
  ASSERT_TRUE(request.has_value()) << request.error().message;
}

TEST_F(X509Test, RequestFromPem) {
  test_support::write_file(dir() / "request.der",
                           std::string(pki().leaf_request.csr_der.begin(),
                                       pki().leaf_request.csr_der.end()));
  std::string pem = openssl(dir(), "req -inform DER -in request.der");
  auto request = CertificateRequest::from_text(pem);
  ASSERT_TRUE(request.has_value()) << request.error().message;
}

TEST_F(X509Test, RequestFromNewPemLabel) {
  std::string pem = cert_poll::x509::der_to_pem(pki().leaf_request.csr_der,
                                                "NEW CERTIFICATE REQUEST");
  auto request = CertificateRequest::from_text(pem);
  ASSERT_TRUE(request.has_value()) << request.error().message;
}

TEST_F(X509Test, RequestRejectsCertificatePem) {
  auto request = CertificateRequest::from_text(pki().leaf_pem);
  ASSERT_FALSE(request.has_value());
  EXPECT_EQ(request.error().kind, ErrorKind::parse);
}

TEST(CertificateRequest, RejectsGarbage) {
  auto request = CertificateRequest::from_text("bm90IGEgcmVxdWVzdA==");
  ASSERT_FALSE(request.has_value());
  EXPECT_EQ(request.error().kind, ErrorKind::parse);
}

TEST(CertificateRequest, RejectsEmpty) {
  auto request = CertificateRequest::from_text(" \n");
  ASSERT_FALSE(request.has_value());
  EXPECT_EQ(request.error().kind, ErrorKind::parse);
  EXPECT_EQ(request.error().message, "the CSR is empty");
}

TEST(CertificateRequest, RejectsInvalidBase64) {
  auto request = CertificateRequest::from_text("MII!");
  ASSERT_FALSE(request.has_value());
  EXPECT_EQ(request.error().kind, ErrorKind::parse);
}

TEST_F(X509Test, SerialHexPadsOddDigitCount) {
  Certificate leaf = parse_file(dir(), "leaf");
  EXPECT_EQ(cert_poll::x509::serial_hex(leaf), "0a1b");
  EXPECT_EQ(cert_poll::x509::serial_hex(leaf),
            lowercase(openssl_field(dir(), "leaf", "serial")));
}

TEST_F(X509Test, SerialHexKeepsHighBit) {
  Certificate direct = parse_file(dir(), "direct");
  EXPECT_EQ(cert_poll::x509::serial_hex(direct), "80");
}

TEST_F(X509Test, SerialHexOfZero) {
  Certificate bare = parse_file(dir(), "bare");
  EXPECT_EQ(cert_poll::x509::serial_hex(bare), "00");
}

TEST_F(X509Test, AkiMatchesOpenssl) {
  std::string text =
      openssl(dir(), "x509 -in leaf.pem -noout -ext authorityKeyIdentifier");
  std::string expected = text.substr(text.find('\n') + 1);
  // OpenSSL 3.0 prints the bare hex, older releases prefix it with "keyid:".
  expected = lowercase(strip(expected, ": \n"));
  if (expected.rfind("keyid", 0) == 0) {
    expected.erase(0, 5);
  }
  Certificate leaf = parse_file(dir(), "leaf");
  EXPECT_EQ(expected.size(), 40U) << text;
  EXPECT_EQ(cert_poll::x509::authority_key_identifier_hex(leaf), expected);
}

TEST_F(X509Test, AkiEmptyWhenAbsent) {
  Certificate bare = parse_file(dir(), "bare");
  EXPECT_EQ(cert_poll::x509::authority_key_identifier_hex(bare), "");
}

TEST_F(X509Test, DatesMatchOpenssl) {
  Certificate leaf = parse_file(dir(), "leaf");
  EXPECT_EQ(cert_poll::x509::not_before_unix(leaf),
            openssl_date(dir(), "leaf", "startdate"));
  EXPECT_EQ(cert_poll::x509::not_after_unix(leaf),
            openssl_date(dir(), "leaf", "enddate"));
}

TEST_F(X509Test, RenewalInfoMatchesOcspRequest) {
  Certificate leaf = parse_file(dir(), "leaf");
  Certificate issuer = parse_file(dir(), "intermediate");
  auto info = cert_poll::x509::renewal_info(leaf, issuer);
  ASSERT_TRUE(info.has_value()) << info.error().message;
  EXPECT_EQ(*info,
            test_support::openssl_ca::cert_id_tail_hex(
                dir(), "leaf", "intermediate"));
}

TEST_F(X509Test, RenewalInfoForRootIssuer) {
  Certificate direct = parse_file(dir(), "direct");
  Certificate root = parse_file(dir(), "root");
  auto info = cert_poll::x509::renewal_info(direct, root);
  ASSERT_TRUE(info.has_value()) << info.error().message;
  EXPECT_EQ(
      *info,
      test_support::openssl_ca::cert_id_tail_hex(dir(), "direct", "root"));
}

// Rebuilds the value from its parts: SHA-256 of the issuer Name, "0420",
// SHA-256 of the issuer key bits, then the serial INTEGER.
TEST_F(X509Test, RenewalInfoMatchesParts) {
  Certificate leaf = parse_file(dir(), "leaf");
  Certificate issuer = parse_file(dir(), "intermediate");
  unsigned char name_hash[EVP_MAX_MD_SIZE];
  unsigned int name_hash_size = 0;
  ASSERT_EQ(X509_NAME_digest(X509_get_issuer_name(leaf.get()),
                             EVP_sha256(),
                             name_hash,
                             &name_hash_size),
            1);
  unsigned char key_hash[EVP_MAX_MD_SIZE];
  unsigned int key_hash_size = 0;
  ASSERT_EQ(
      X509_pubkey_digest(issuer.get(), EVP_sha256(), key_hash, &key_hash_size),
      1);
  unsigned char *serial = nullptr;
  int serial_size =
      i2d_ASN1_INTEGER(X509_get0_serialNumber(leaf.get()), &serial);
  ASSERT_GT(serial_size, 0);
  std::string expected = hex(name_hash, name_hash_size) + "0420" +
                         hex(key_hash, key_hash_size) +
                         hex(serial, static_cast<std::size_t>(serial_size));
  OPENSSL_free(serial);
  auto info = cert_poll::x509::renewal_info(leaf, issuer);
  ASSERT_TRUE(info.has_value()) << info.error().message;
  EXPECT_EQ(*info, expected);
}

TEST_F(X509Test, SamePublicKeyForOwnRequest) {
  Certificate leaf = parse_file(dir(), "leaf");
  auto request = CertificateRequest::from_text(pki().leaf_request.csr_base64);
  ASSERT_TRUE(request.has_value()) << request.error().message;
  EXPECT_TRUE(cert_poll::x509::same_public_key(leaf, *request));
}

TEST_F(X509Test, SamePublicKeyForOtherRequest) {
  Certificate intermediate = parse_file(dir(), "intermediate");
  auto request = CertificateRequest::from_text(pki().leaf_request.csr_base64);
  ASSERT_TRUE(request.has_value()) << request.error().message;
  EXPECT_FALSE(cert_poll::x509::same_public_key(intermediate, *request));
}

} // namespace
