// SPDX-License-Identifier: Apache-2.0
#include "cert_poll/certificate_check.hpp"

#include <cctype>
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "support/test_support.hpp"

namespace {

using cert_poll::check_issued_certificate;
using cert_poll::ErrorKind;
using test_support::run_command;
using test_support::shell_quote;

std::string openssl(const std::filesystem::path &dir, const std::string &args) {
  auto result =
      run_command("cd " + shell_quote(dir.string()) + " && openssl " + args);
  EXPECT_EQ(result.exit_status, 0) << "openssl " << args;
  return result.output;
}

// The one-line base64 DER of a PEM certificate file, by the openssl command
// line.
std::string base64_der(const std::filesystem::path &dir,
                       const std::string &name) {
  return openssl(dir,
                 "x509 -in " + shell_quote(name + ".pem") +
                     " -outform DER | openssl base64 -A");
}

// The keyIdentifier printed by `openssl x509 -ext authorityKeyIdentifier`,
// without colons and in lowercase.
std::string openssl_aki(const std::filesystem::path &dir,
                        const std::string &name) {
  std::string text = openssl(dir,
                             "x509 -in " + shell_quote(name + ".pem") +
                                 " -noout -ext authorityKeyIdentifier");
  std::string value = text.substr(text.find('\n') + 1);
  // OpenSSL 3.0 prints the bare hex, older releases prefix it with "keyid:".
  if (auto prefix = value.find("keyid:"); prefix != std::string::npos) {
    value.erase(prefix, 6);
  }
  std::string aki;
  for (char c : value) {
    if (std::isxdigit(static_cast<unsigned char>(c)) != 0) {
      aki.push_back(static_cast<char>(std::tolower(c)));
    }
  }
  return aki;
}

bool contains(const std::string &text, const std::string &part) {
  return text.find(part) != std::string::npos;
}

bool mentions_renewal_info(const std::vector<std::string> &warnings) {
  for (const auto &warning : warnings) {
    if (contains(warning, "renewal_info")) {
      return true;
    }
  }
  return false;
}

// One PKI for the whole suite, because the openssl runs take a while.
class CertificateCheckTest : public ::testing::Test {
protected:
  static void SetUpTestSuite() {
    s_dir = std::make_unique<test_support::TempDir>();
    s_pki = std::make_unique<test_support::TestPki>(
        test_support::make_test_pki(s_dir->path()));
    auto other = test_support::make_key_and_csr("other.example");
    test_support::openssl_ca::sign_request(
        s_dir->path(), "other", other.csr_der, "intermediate", "0x42");
  }
  static void TearDownTestSuite() {
    s_pki.reset();
    s_dir.reset();
  }

  static const std::filesystem::path &dir() { return s_dir->path(); }
  static const test_support::TestPki &pki() { return *s_pki; }
  static std::string chain() { return pki().leaf_pem + pki().intermediate_pem; }
  static const std::string &csr() { return pki().leaf_request.csr_base64; }

private:
  static inline std::unique_ptr<test_support::TempDir> s_dir;
  static inline std::unique_ptr<test_support::TestPki> s_pki;
};

TEST_F(CertificateCheckTest, GoodChain) {
  auto checked =
      check_issued_certificate(chain(), base64_der(dir(), "leaf"), csr());
  ASSERT_TRUE(checked.has_value()) << checked.error().message;
  const auto &cert = checked->certificate;
  EXPECT_EQ(cert.chain_pem, chain());
  EXPECT_EQ(cert.cert_raw, base64_der(dir(), "leaf"));
  EXPECT_EQ(cert.serial, "0a1b");
  EXPECT_EQ(cert.aki, openssl_aki(dir(), "leaf"));
  EXPECT_EQ(cert.renewal_info,
            test_support::openssl_ca::cert_id_tail_hex(
                dir(), "leaf", "intermediate"));
  EXPECT_GT(cert.expire_uts, cert.issue_uts);
  EXPECT_TRUE(checked->warnings.empty());
}

TEST_F(CertificateCheckTest, IssuerCacheSameResult) {
  cert_poll::x509::CertificateCache issuers;
  auto plain =
      check_issued_certificate(chain(), base64_der(dir(), "leaf"), csr());
  auto first = check_issued_certificate(
      chain(), base64_der(dir(), "leaf"), csr(), &issuers);
  auto second = check_issued_certificate(
      chain(), base64_der(dir(), "leaf"), csr(), &issuers);
  ASSERT_TRUE(plain.has_value()) << plain.error().message;
  ASSERT_TRUE(first.has_value()) << first.error().message;
  ASSERT_TRUE(second.has_value()) << second.error().message;
  EXPECT_EQ(second->certificate.renewal_info, plain->certificate.renewal_info);
  EXPECT_EQ(second->certificate.aki, plain->certificate.aki);
  EXPECT_EQ(second->certificate.serial, plain->certificate.serial);
}

TEST_F(CertificateCheckTest, IssuerCacheStillChecksSignature) {
  cert_poll::x509::CertificateCache issuers;
  ASSERT_TRUE(check_issued_certificate(
                  chain(), base64_der(dir(), "leaf"), csr(), &issuers)
                  .has_value());
  // The leaf followed by the root, which did not sign it.
  auto checked = check_issued_certificate(pki().leaf_pem + pki().root_pem,
                                          base64_der(dir(), "leaf"),
                                          csr(),
                                          &issuers);
  ASSERT_FALSE(checked.has_value());
  EXPECT_EQ(checked.error().kind, ErrorKind::check);
}

TEST_F(CertificateCheckTest, DatesMatchOpenssl) {
  auto checked = check_issued_certificate(chain(), "", csr());
  ASSERT_TRUE(checked.has_value()) << checked.error().message;
  std::string start = openssl(dir(), "x509 -in leaf.pem -noout -startdate");
  start = start.substr(start.find('=') + 1);
  auto seconds = run_command("date -u -d " + shell_quote(start) + " +%s");
  ASSERT_EQ(seconds.exit_status, 0);
  EXPECT_EQ(checked->certificate.issue_uts, std::stoll(seconds.output));
}

TEST_F(CertificateCheckTest, NormalisesChainPem) {
  // One long base64 line per certificate and CRLF line ends, as a CA might
  // send them.
  std::string wide =
      "-----BEGIN CERTIFICATE-----\r\n" + base64_der(dir(), "leaf") +
      "\r\n-----END CERTIFICATE-----\r\n" + pki().intermediate_pem;
  auto checked = check_issued_certificate(wide, "", csr());
  ASSERT_TRUE(checked.has_value()) << checked.error().message;
  EXPECT_EQ(checked->certificate.chain_pem, chain());
}

TEST_F(CertificateCheckTest, LeafOnlyWarns) {
  auto checked = check_issued_certificate(pki().leaf_pem, "", csr());
  ASSERT_TRUE(checked.has_value()) << checked.error().message;
  EXPECT_EQ(checked->certificate.renewal_info, "");
  EXPECT_TRUE(mentions_renewal_info(checked->warnings));
  EXPECT_EQ(checked->certificate.serial, "0a1b");
}

TEST_F(CertificateCheckTest, EmptyCertRawDerived) {
  auto checked = check_issued_certificate(chain(), "", csr());
  ASSERT_TRUE(checked.has_value()) << checked.error().message;
  EXPECT_EQ(checked->certificate.cert_raw, base64_der(dir(), "leaf"));
}

TEST_F(CertificateCheckTest, MultiLineCertRawStoredOnOneLine) {
  std::string raw = base64_der(dir(), "leaf");
  std::string wrapped = raw.substr(0, 64) + "\n" + raw.substr(64) + "\n";
  auto checked = check_issued_certificate(chain(), wrapped, csr());
  ASSERT_TRUE(checked.has_value()) << checked.error().message;
  EXPECT_EQ(checked->certificate.cert_raw, raw);
}

TEST_F(CertificateCheckTest, CertRawMismatch) {
  auto checked = check_issued_certificate(
      chain(), base64_der(dir(), "intermediate"), csr());
  ASSERT_FALSE(checked.has_value());
  EXPECT_EQ(checked.error().kind, ErrorKind::check);
  EXPECT_TRUE(contains(checked.error().message,
                       "cert_raw is not the chain's first certificate"))
      << checked.error().message;
}

TEST_F(CertificateCheckTest, CertRawInvalidBase64) {
  auto checked = check_issued_certificate(chain(), "not*base64", csr());
  ASSERT_FALSE(checked.has_value());
  EXPECT_EQ(checked.error().kind, ErrorKind::check);
  EXPECT_TRUE(contains(checked.error().message, "cert_raw"))
      << checked.error().message;
}

TEST_F(CertificateCheckTest, OtherKeyRejected) {
  std::string other = test_support::read_file(dir() / "other.pem");
  auto checked =
      check_issued_certificate(other + pki().intermediate_pem, "", csr());
  ASSERT_FALSE(checked.has_value());
  EXPECT_EQ(checked.error().kind, ErrorKind::check);
  EXPECT_TRUE(contains(checked.error().message, "is not the CSR's public key"))
      << checked.error().message;
}

TEST_F(CertificateCheckTest, GarbagePemRejected) {
  auto checked = check_issued_certificate("garbage", "", csr());
  ASSERT_FALSE(checked.has_value());
  EXPECT_EQ(checked.error().kind, ErrorKind::check);
  EXPECT_TRUE(
      contains(checked.error().message, "the issued chain does not parse"))
      << checked.error().message;
}

TEST_F(CertificateCheckTest, InvalidCsrRejected) {
  auto checked = check_issued_certificate(chain(), "", "bm90IGEgQ1NS");
  ASSERT_FALSE(checked.has_value());
  EXPECT_EQ(checked.error().kind, ErrorKind::check);
  EXPECT_TRUE(contains(checked.error().message, "the stored CSR is invalid"))
      << checked.error().message;
}

TEST_F(CertificateCheckTest, IssuerFirstIsOutOfOrder) {
  auto checked = check_issued_certificate(
      pki().intermediate_pem + pki().leaf_pem, "", csr());
  ASSERT_FALSE(checked.has_value());
  EXPECT_EQ(checked.error().kind, ErrorKind::check);
  EXPECT_TRUE(contains(checked.error().message, "out of order"))
      << checked.error().message;
}

TEST_F(CertificateCheckTest, WrongIssuerIsOutOfOrder) {
  auto checked =
      check_issued_certificate(pki().leaf_pem + pki().root_pem, "", csr());
  ASSERT_FALSE(checked.has_value());
  EXPECT_EQ(checked.error().kind, ErrorKind::check);
  EXPECT_TRUE(contains(checked.error().message, "out of order"))
      << checked.error().message;
}

TEST_F(CertificateCheckTest, ForgedIssuerIsRejected) {
  // Same subject as the real issuing CA, but another key.
  test_support::openssl_ca::make_root(
      dir(), "forged", "/CN=Test Intermediate CA");
  std::string forged = test_support::read_file(dir() / "forged.pem");

  auto checked = check_issued_certificate(pki().leaf_pem + forged, "", csr());

  ASSERT_FALSE(checked.has_value());
  EXPECT_EQ(checked.error().kind, ErrorKind::check);
  EXPECT_TRUE(contains(checked.error().message, "is not signed by the key"))
      << checked.error().message;
}

TEST_F(CertificateCheckTest, ForgedRootIsRejected) {
  test_support::openssl_ca::make_root(dir(), "forged_root", "/CN=Test Root CA");
  std::string forged = test_support::read_file(dir() / "forged_root.pem");

  auto checked = check_issued_certificate(
      pki().leaf_pem + pki().intermediate_pem + forged, "", csr());

  ASSERT_FALSE(checked.has_value());
  EXPECT_TRUE(contains(checked.error().message, "certificate 2 of the chain"))
      << checked.error().message;
}

} // namespace
