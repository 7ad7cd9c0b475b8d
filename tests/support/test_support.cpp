// SPDX-License-Identifier: Apache-2.0
#include "support/test_support.hpp"

#include "cert_poll/x509.hpp"

#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <sys/wait.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

namespace test_support {

TempDir::TempDir() {
  std::string pattern =
      (std::filesystem::temp_directory_path() / "cert_poll_test.XXXXXX")
          .string();
  if (mkdtemp(pattern.data()) == nullptr) {
    throw std::runtime_error("mkdtemp failed for " + pattern);
  }
  m_path = pattern;
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(m_path, ignored);
}

namespace {

struct PkeyFree {
  void operator()(EVP_PKEY *key) const { EVP_PKEY_free(key); }
};
struct ReqFree {
  void operator()(X509_REQ *request) const { X509_REQ_free(request); }
};
struct BioFree {
  void operator()(BIO *bio) const { BIO_free(bio); }
};

void require(bool condition, const char *what) {
  if (!condition) {
    throw std::runtime_error(std::string("OpenSSL call failed: ") + what);
  }
}

std::string bio_text(BIO *bio) {
  char *data = nullptr;
  long length = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<std::size_t>(length));
}

} // namespace

KeyAndCsr make_key_and_csr(const std::string &common_name,
                           const std::vector<std::string> &dns_names) {
  std::unique_ptr<EVP_PKEY, PkeyFree> key(EVP_EC_gen("P-256"));
  require(key != nullptr, "EVP_EC_gen");

  std::unique_ptr<X509_REQ, ReqFree> request(X509_REQ_new());
  require(request != nullptr, "X509_REQ_new");
  X509_REQ_set_version(request.get(), 0);
  X509_NAME *name = X509_REQ_get_subject_name(request.get());
  require(X509_NAME_add_entry_by_txt(
              name, "CN", MBSTRING_UTF8,
              reinterpret_cast<const unsigned char *>(common_name.c_str()), -1,
              -1, 0) == 1,
          "X509_NAME_add_entry_by_txt");

  std::vector<std::string> names = dns_names;
  if (names.empty()) {
    names.push_back(common_name);
  }
  std::string san;
  for (const auto &dns_name : names) {
    san += (san.empty() ? "DNS:" : ",DNS:") + dns_name;
  }
  STACK_OF(X509_EXTENSION) *extensions = sk_X509_EXTENSION_new_null();
  X509_EXTENSION *san_extension =
      X509V3_EXT_conf_nid(nullptr, nullptr, NID_subject_alt_name, san.c_str());
  require(san_extension != nullptr, "X509V3_EXT_conf_nid");
  sk_X509_EXTENSION_push(extensions, san_extension);
  require(X509_REQ_add_extensions(request.get(), extensions) == 1,
          "X509_REQ_add_extensions");
  sk_X509_EXTENSION_pop_free(extensions, X509_EXTENSION_free);

  require(X509_REQ_set_pubkey(request.get(), key.get()) == 1,
          "X509_REQ_set_pubkey");
  require(X509_REQ_sign(request.get(), key.get(), EVP_sha256()) > 0,
          "X509_REQ_sign");

  KeyAndCsr result;
  int length = i2d_X509_REQ(request.get(), nullptr);
  require(length > 0, "i2d_X509_REQ");
  result.csr_der.resize(static_cast<std::size_t>(length));
  unsigned char *out = result.csr_der.data();
  i2d_X509_REQ(request.get(), &out);
  result.csr_base64 = cert_poll::x509::encode_base64(result.csr_der);

  std::unique_ptr<BIO, BioFree> bio(BIO_new(BIO_s_mem()));
  require(PEM_write_bio_PrivateKey(bio.get(), key.get(), nullptr, nullptr, 0,
                                   nullptr, nullptr) == 1,
          "PEM_write_bio_PrivateKey");
  result.key_pem = bio_text(bio.get());
  return result;
}

CommandResult run_command(const std::string &command) {
  CommandResult result;
  FILE *pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) {
    throw std::runtime_error("popen failed for: " + command);
  }
  std::array<char, 4096> buffer{};
  std::size_t count = 0;
  while ((count = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0) {
    result.output.append(buffer.data(), count);
  }
  int status = pclose(pipe);
  if (WIFEXITED(status)) {
    result.exit_status = WEXITSTATUS(status);
  }
  return result;
}

std::string read_file(const std::filesystem::path &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw std::runtime_error("cannot read " + path.string());
  }
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

void write_file(const std::filesystem::path &path, const std::string &text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out) {
    throw std::runtime_error("cannot write " + path.string());
  }
}

std::string shell_quote(const std::string &text) {
  std::string quoted = "'";
  for (char c : text) {
    if (c == '\'') {
      quoted += "'\\''";
    } else {
      quoted += c;
    }
  }
  return quoted + "'";
}

} // namespace test_support
