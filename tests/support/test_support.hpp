// SPDX-License-Identifier: Apache-2.0
#pragma once

// Helpers shared by the test executables: temporary folders, keys and CSRs
// made with OpenSSL, and running shell commands.

#include <filesystem>
#include <string>
#include <vector>

namespace test_support {

// A fresh folder under the system temporary folder, removed on destruction.
class TempDir {
public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir &) = delete;
  TempDir &operator=(const TempDir &) = delete;

  const std::filesystem::path &path() const { return m_path; }
  std::filesystem::path operator/(const std::string &name) const {
    return m_path / name;
  }

private:
  std::filesystem::path m_path;
};

// A new EC P-256 key and a PKCS#10 request signed with it.
struct KeyAndCsr {
  std::string key_pem;                // PKCS#8 private key
  std::vector<unsigned char> csr_der; // the request
  std::string csr_base64;             // base64 of csr_der, as acme2certifier
                                      // stores it
};

// Makes a key and a CSR with subject CN=`common_name` and one DNS
// subjectAltName per entry of `dns_names` (the common name when empty).
KeyAndCsr make_key_and_csr(const std::string &common_name,
                           const std::vector<std::string> &dns_names = {});

// The result of a shell command.
struct CommandResult {
  int exit_status = -1; // -1 when the command was killed by a signal
  std::string output;   // standard output
};

// Runs `command` with /bin/sh and returns its exit status and standard
// output. Standard error passes through to the test's own.
CommandResult run_command(const std::string &command);

std::string read_file(const std::filesystem::path &path);
void write_file(const std::filesystem::path &path, const std::string &text);

// Quotes `text` for /bin/sh.
std::string shell_quote(const std::string &text);

// A certificate authority for tests, made with the openssl command line in a
// folder. Each certificate is written there as `<name>.pem` (PEM) and each
// key as `<name>.key`. The functions throw std::runtime_error when a command
// fails.
namespace openssl_ca {

// Writes `openssl.cnf` and returns its path. Its extension sections
// `ca_ext` and `leaf_ext` add subjectKeyIdentifier and
// authorityKeyIdentifier. `bare_ext` sets both to `none`, because openssl 3.0
// x509 -req adds them by default.
std::filesystem::path write_config(const std::filesystem::path &dir);

// Makes a self-signed root CA `name` with subject `subject` ("/CN=...").
void make_root(const std::filesystem::path &dir,
               const std::string &name,
               const std::string &subject);

// Makes an intermediate CA `name` signed by the CA `issuer`.
void make_intermediate(const std::filesystem::path &dir,
                       const std::string &name,
                       const std::string &subject,
                       const std::string &issuer);

// Signs the PKCS#10 request `csr_der` with the CA `issuer` into `name`, with
// serial `serial` (an openssl -set_serial value such as "0xa1b") and the
// extension section `extensions` of write_config.
void sign_request(const std::filesystem::path &dir,
                  const std::string &name,
                  const std::vector<unsigned char> &csr_der,
                  const std::string &issuer,
                  const std::string &serial,
                  const std::string &extensions = "leaf_ext");

// Makes an OCSP request for `leaf` with SHA-256 and no nonce, and returns the
// hex after its first byte-aligned "04 20". Because the CertID is the last
// field of such a request, that is the CertID after the issuerNameHash
// OCTET STRING header.
std::string cert_id_tail_hex(const std::filesystem::path &dir,
                             const std::string &leaf,
                             const std::string &issuer);

} // namespace openssl_ca

// A root CA `root`, an intermediate CA `intermediate` signed by it and a leaf
// `leaf` with serial 0xa1b signed by the intermediate for `leaf_request`.
struct TestPki {
  std::filesystem::path dir;
  KeyAndCsr leaf_request;
  std::string root_pem;
  std::string intermediate_pem;
  std::string leaf_pem;
};

TestPki make_test_pki(const std::filesystem::path &dir);

} // namespace test_support
