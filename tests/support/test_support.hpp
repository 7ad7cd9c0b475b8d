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

} // namespace test_support
