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
              name,
              "CN",
              MBSTRING_UTF8,
              reinterpret_cast<const unsigned char *>(common_name.c_str()),
              -1,
              -1,
              0) == 1,
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
  require(PEM_write_bio_PrivateKey(
              bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) == 1,
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

namespace openssl_ca {

namespace {

// Runs an openssl command in `dir` and throws when it fails. Its output goes
// to /dev/null because the tests read the files it writes.
void run_openssl(const std::filesystem::path &dir, const std::string &args) {
  std::string command = "cd " + shell_quote(dir.string()) + " && openssl " +
                        args + " >/dev/null 2>&1";
  if (run_command(command).exit_status != 0) {
    throw std::runtime_error("openssl command failed: " + command);
  }
}

const std::string new_ec_key =
    "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";

} // namespace

std::filesystem::path write_config(const std::filesystem::path &dir) {
  std::filesystem::path path = dir / "openssl.cnf";
  write_file(path,
             "[req]\n"
             "distinguished_name = dn\n"
             "prompt = no\n"
             "[dn]\n"
             "CN = unused\n"
             "[ca_ext]\n"
             "basicConstraints = critical,CA:TRUE\n"
             "keyUsage = critical,keyCertSign,cRLSign\n"
             "subjectKeyIdentifier = hash\n"
             "authorityKeyIdentifier = keyid:always\n"
             "[leaf_ext]\n"
             "basicConstraints = critical,CA:FALSE\n"
             "keyUsage = critical,digitalSignature\n"
             "subjectKeyIdentifier = hash\n"
             "authorityKeyIdentifier = keyid:always\n"
             "[bare_ext]\n"
             "basicConstraints = critical,CA:FALSE\n"
             "subjectKeyIdentifier = none\n"
             "authorityKeyIdentifier = none\n");
  return path;
}

void make_root(const std::filesystem::path &dir,
               const std::string &name,
               const std::string &subject) {
  write_config(dir);
  run_openssl(dir,
              "req -x509 -config openssl.cnf -extensions ca_ext " + new_ec_key +
                  " -keyout " + shell_quote(name + ".key") + " -out " +
                  shell_quote(name + ".pem") + " -subj " +
                  shell_quote(subject) + " -days 3650");
}

void make_intermediate(const std::filesystem::path &dir,
                       const std::string &name,
                       const std::string &subject,
                       const std::string &issuer) {
  write_config(dir);
  run_openssl(dir,
              "req -new -config openssl.cnf " + new_ec_key + " -keyout " +
                  shell_quote(name + ".key") + " -out " +
                  shell_quote(name + ".csr") + " -subj " +
                  shell_quote(subject));
  run_openssl(dir,
              "x509 -req -in " + shell_quote(name + ".csr") + " -CA " +
                  shell_quote(issuer + ".pem") + " -CAkey " +
                  shell_quote(issuer + ".key") +
                  " -set_serial 0x1234 -days 1825 -extfile openssl.cnf "
                  "-extensions ca_ext -out " +
                  shell_quote(name + ".pem"));
}

void sign_request(const std::filesystem::path &dir,
                  const std::string &name,
                  const std::vector<unsigned char> &csr_der,
                  const std::string &issuer,
                  const std::string &serial,
                  const std::string &extensions) {
  write_config(dir);
  std::string csr_file = name + ".csr.der";
  write_file(dir / csr_file, std::string(csr_der.begin(), csr_der.end()));
  run_openssl(
      dir,
      "x509 -req -inform DER -in " + shell_quote(csr_file) + " -CA " +
          shell_quote(issuer + ".pem") + " -CAkey " +
          shell_quote(issuer + ".key") + " -set_serial " + shell_quote(serial) +
          " -days 90 -extfile openssl.cnf -extensions " +
          shell_quote(extensions) + " -out " + shell_quote(name + ".pem"));
}

std::string cert_id_tail_hex(const std::filesystem::path &dir,
                             const std::string &leaf,
                             const std::string &issuer) {
  run_openssl(dir,
              "ocsp -issuer " + shell_quote(issuer + ".pem") +
                  " -sha256 -cert " + shell_quote(leaf + ".pem") +
                  " -no_nonce -reqout ocsp.der");
  std::string der = read_file(dir / "ocsp.der");
  std::size_t start = std::string::npos;
  for (std::size_t i = 0; i + 1 < der.size(); ++i) {
    if (der[i] == '\x04' && der[i + 1] == '\x20') {
      start = i + 2;
      break;
    }
  }
  if (start == std::string::npos) {
    throw std::runtime_error("no 04 20 in the OCSP request for " + leaf);
  }
  static constexpr char digits[] = "0123456789abcdef";
  std::string hex;
  for (std::size_t i = start; i < der.size(); ++i) {
    auto byte = static_cast<unsigned char>(der[i]);
    hex.push_back(digits[byte >> 4]);
    hex.push_back(digits[byte & 0x0f]);
  }
  return hex;
}

} // namespace openssl_ca

TestPki make_test_pki(const std::filesystem::path &dir) {
  TestPki pki;
  pki.dir = dir;
  pki.leaf_request = make_key_and_csr("leaf.example");
  openssl_ca::make_root(dir, "root", "/CN=Test Root CA");
  openssl_ca::make_intermediate(
      dir, "intermediate", "/CN=Test Intermediate CA", "root");
  openssl_ca::sign_request(
      dir, "leaf", pki.leaf_request.csr_der, "intermediate", "0xa1b");
  pki.root_pem = read_file(dir / "root.pem");
  pki.intermediate_pem = read_file(dir / "intermediate.pem");
  pki.leaf_pem = read_file(dir / "leaf.pem");
  return pki;
}

} // namespace test_support
