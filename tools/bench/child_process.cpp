// SPDX-License-Identifier: Apache-2.0
#include "child_process.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <spawn.h>
#include <stdexcept>
#include <sys/resource.h>
#include <sys/wait.h>

extern char **environ;

namespace bench {

namespace {

std::chrono::duration<double> to_duration(const timeval &value) {
  return std::chrono::seconds(value.tv_sec) +
         std::chrono::microseconds(value.tv_usec);
}

class FileActions {
public:
  FileActions() { posix_spawn_file_actions_init(&m_actions); }
  ~FileActions() { posix_spawn_file_actions_destroy(&m_actions); }
  FileActions(const FileActions &) = delete;
  FileActions &operator=(const FileActions &) = delete;
  posix_spawn_file_actions_t *get() { return &m_actions; }

private:
  posix_spawn_file_actions_t m_actions{};
};

void check_spawn_call(int code, const char *call) {
  if (code != 0) {
    throw std::runtime_error(std::string(call) +
                             " failed: " + std::strerror(code));
  }
}

// Starts `arguments` with posix_spawnp and `actions`, waits for it and
// returns how it ended and its resource usage.
ChildResult spawn_and_wait(std::vector<char *> &arguments,
                           const posix_spawn_file_actions_t *actions) {
  pid_t pid = 0;
  int code = posix_spawnp(
      &pid, arguments[0], actions, nullptr, arguments.data(), environ);
  if (code != 0) {
    throw std::runtime_error("failed to start '" + std::string(arguments[0]) +
                             "': " + std::strerror(code));
  }
  int status = 0;
  rusage usage{};
  while (wait4(pid, &status, 0, &usage) < 0) {
    if (errno != EINTR) {
      throw std::runtime_error("wait4 failed for '" +
                               std::string(arguments[0]) +
                               "': " + std::strerror(errno));
    }
  }
  ChildResult result;
  result.cpu = to_duration(usage.ru_utime) + to_duration(usage.ru_stime);
  result.peak_rss_kib = usage.ru_maxrss;
  if (WIFEXITED(status)) {
    result.exit_status = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.signal = WTERMSIG(status);
  }
  return result;
}

std::vector<char *> pointers_to(const std::vector<std::string> &strings) {
  std::vector<char *> pointers;
  for (const std::string &text : strings) {
    pointers.push_back(const_cast<char *>(text.c_str()));
  }
  pointers.push_back(nullptr);
  return pointers;
}

} // namespace

int measure_child_main(int argc, char **argv) {
  if (argc < 5 || std::strcmp(argv[1], k_measure_child_flag) != 0 ||
      std::strcmp(argv[3], "--") != 0) {
    std::fprintf(stderr,
                 "cert_poll_bench: usage: %s RESULT_FILE -- PROGRAM [ARG...]\n",
                 k_measure_child_flag);
    return 2;
  }
  std::vector<char *> arguments(argv + 4, argv + argc);
  arguments.push_back(nullptr);
  ChildResult result;
  try {
    result = spawn_and_wait(arguments, nullptr);
  } catch (const std::exception &error) {
    std::fprintf(stderr, "cert_poll_bench: %s\n", error.what());
    return 1;
  }
  std::ofstream out(argv[2]);
  out << result.exit_status << ' ' << result.signal << ' ' << result.cpu.count()
      << ' ' << result.peak_rss_kib << '\n';
  return out ? 0 : 1;
}

ChildResult run_child(const std::vector<std::string> &argv,
                      const std::filesystem::path &log_file) {
  if (argv.empty()) {
    throw std::invalid_argument("run_child needs a program to run");
  }
  // Linux keeps the larger of a process's peak RSS and the RSS of the
  // memory it replaced at exec, and a child started with posix_spawn or
  // fork begins with the benchmark's memory, which grows with the number of
  // orders. So this process starts a fresh copy of its own binary, which
  // is small, and that copy starts the program and reports its usage.
  const std::filesystem::path result_file = log_file.string() + ".usage";
  std::vector<std::string> launcher{
      "/proc/self/exe", k_measure_child_flag, result_file.string(), "--"};
  launcher.insert(launcher.end(), argv.begin(), argv.end());
  std::vector<char *> arguments = pointers_to(launcher);

  FileActions actions;
  check_spawn_call(posix_spawn_file_actions_addopen(
                       actions.get(), 0, "/dev/null", O_RDONLY, 0),
                   "posix_spawn_file_actions_addopen");
  check_spawn_call(
      posix_spawn_file_actions_addopen(actions.get(),
                                       1,
                                       log_file.c_str(),
                                       O_WRONLY | O_CREAT | O_APPEND,
                                       0644),
      "posix_spawn_file_actions_addopen");
  check_spawn_call(posix_spawn_file_actions_adddup2(actions.get(), 1, 2),
                   "posix_spawn_file_actions_adddup2");

  auto began = std::chrono::steady_clock::now();
  ChildResult launched = spawn_and_wait(arguments, actions.get());
  auto wall = std::chrono::steady_clock::now() - began;
  if (launched.exit_status != 0) {
    throw std::runtime_error("failed to start '" + argv[0] + "' (" +
                             describe_end(launched) + "): see '" +
                             log_file.string() + "'");
  }

  std::ifstream in(result_file);
  ChildResult result;
  double cpu_seconds = 0;
  in >> result.exit_status >> result.signal >> cpu_seconds >>
      result.peak_rss_kib;
  if (!in) {
    throw std::runtime_error("cannot read the resource usage of '" + argv[0] +
                             "' from '" + result_file.string() + "'");
  }
  std::filesystem::remove(result_file);
  result.wall = wall;
  result.cpu = std::chrono::duration<double>(cpu_seconds);
  return result;
}

std::string describe_end(const ChildResult &result) {
  if (result.signal != 0) {
    return "signal " + std::to_string(result.signal);
  }
  return "exit status " + std::to_string(result.exit_status);
}

} // namespace bench
