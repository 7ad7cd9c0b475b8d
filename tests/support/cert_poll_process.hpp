// SPDX-License-Identifier: Apache-2.0
#pragma once

// Runs the cert_poll binary as a child process whose PID the test holds, so
// that it can be killed at any moment or raced against another writer.
// Header-only, so that it needs no change to the test_support library.

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <optional>
#include <spawn.h>
#include <stdexcept>
#include <string>
#include <string_view>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include "support/test_support.hpp"

extern char **environ;

namespace test_support {

// Writes `<dir>/root.pem` and `<dir>/acme_srv.cfg` for a demo CA at
// `base_url` with trust anchor `root_pem`. The configuration names the
// password by the variable DEMO_CA_PASSWORD, which CertPollProcess sets.
inline std::filesystem::path write_poll_config(const std::filesystem::path &dir,
                                               const std::filesystem::path &db,
                                               const std::string &base_url,
                                               const std::string &root_pem) {
  std::filesystem::path root = dir / "root.pem";
  write_file(root, root_pem);
  std::filesystem::path config = dir / "acme_srv.cfg";
  write_file(config,
             "[DEFAULT]\ndebug: False\n\n[DBhandler]\ndbfile: " + db.string() +
                 "\n\n[CAhandler]\nhandler_file: "
                 "examples/ca_handler/certifier_ca_handler.py\napi_host: " +
                 base_url +
                 "\napi_user: demo\napi_password_variable: "
                 "DEMO_CA_PASSWORD\nca_bundle: " +
                 root.string() + "\n");
  return config;
}

// One cert_poll process started with posix_spawn. Its standard output and
// standard error go to `log`. The destructor kills and reaps a process that
// is still running, so that no test leaves one behind.
class CertPollProcess {
public:
  CertPollProcess(const std::vector<std::string> &arguments,
                  const std::filesystem::path &log,
                  const std::string &password)
      : m_log(log) {
    std::vector<std::string> environment = child_environment(password);
    std::vector<std::string> argv_text{CERT_POLL_BINARY};
    argv_text.insert(argv_text.end(), arguments.begin(), arguments.end());

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions,
                                     STDOUT_FILENO,
                                     log.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC,
                                     0600);
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
    std::vector<char *> argv = pointers(argv_text);
    std::vector<char *> envp = pointers(environment);
    int code = posix_spawn(
        &m_pid, CERT_POLL_BINARY, &actions, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    if (code != 0) {
      throw std::runtime_error(std::string("posix_spawn failed: ") +
                               std::strerror(code));
    }
  }

  ~CertPollProcess() {
    if (!m_status) {
      kill_now();
    }
  }

  CertPollProcess(const CertPollProcess &) = delete;
  CertPollProcess &operator=(const CertPollProcess &) = delete;

  pid_t pid() const { return m_pid; }

  // Returns true when the process has ended, without waiting.
  bool ended() {
    if (m_status) {
      return true;
    }
    int status = 0;
    if (waitpid(m_pid, &status, WNOHANG) == m_pid) {
      m_status = status;
    }
    return m_status.has_value();
  }

  // Waits for the process to end and returns its exit status, or -1 when a
  // signal ended it.
  int wait() {
    if (!m_status) {
      int status = 0;
      while (waitpid(m_pid, &status, 0) == -1 && errno == EINTR) {
      }
      m_status = status;
    }
    return WIFEXITED(*m_status) ? WEXITSTATUS(*m_status) : -1;
  }

  // Sends SIGKILL and reaps the process. Returns true when the signal ended
  // it, false when it had already exited by itself.
  bool kill_now() {
    if (ended()) {
      return false;
    }
    ::kill(m_pid, SIGKILL);
    wait();
    return WIFSIGNALED(*m_status) && WTERMSIG(*m_status) == SIGKILL;
  }

  std::string output() const { return read_file(m_log); }

private:
  static std::vector<std::string>
  child_environment(const std::string &password) {
    std::vector<std::string> environment;
    for (char **entry = environ; *entry != nullptr; ++entry) {
      std::string_view text(*entry);
      if (!text.starts_with("DEMO_CA_PASSWORD=") &&
          !text.starts_with("ACME_SRV_CONFIGFILE=")) {
        environment.emplace_back(text);
      }
    }
    environment.push_back("DEMO_CA_PASSWORD=" + password);
    return environment;
  }

  // Returns argv-style pointers into `texts`, ending with nullptr.
  static std::vector<char *> pointers(std::vector<std::string> &texts) {
    std::vector<char *> result;
    for (auto &text : texts) {
      result.push_back(text.data());
    }
    result.push_back(nullptr);
    return result;
  }

  std::filesystem::path m_log;
  pid_t m_pid = -1;
  std::optional<int> m_status;
};

} // namespace test_support
