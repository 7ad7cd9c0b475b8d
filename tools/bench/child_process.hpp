// SPDX-License-Identifier: Apache-2.0
#pragma once

// Runs one program to completion and measures it, for the benchmark.

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

namespace bench {

// The first argument that makes cert_poll_bench run as the launcher of
// run_child() instead of as the benchmark.
inline constexpr const char *k_measure_child_flag = "--measure-child";

struct ChildResult {
  int exit_status = -1; // -1 when a signal ended the child
  int signal = 0;       // the signal that ended it, else 0
  std::chrono::duration<double> wall{0};
  std::chrono::duration<double> cpu{0}; // user + system
  long peak_rss_kib = 0;                // ru_maxrss of the child
};

// Starts argv[0] (searched in PATH when it has no '/') with the current
// environment, standard input from /dev/null and standard output and error
// appended to `log_file`. Waits for it and returns the child's own resource
// usage, measured by a launcher (see measure_child_main). Throws
// std::runtime_error when the program cannot be started.
ChildResult run_child(const std::vector<std::string> &argv,
                      const std::filesystem::path &log_file);

// Runs as the launcher when argv[1] is k_measure_child_flag: argv is
// `--measure-child RESULT_FILE -- PROGRAM [ARG...]`. Starts PROGRAM, waits
// for it and writes its exit status, signal, CPU seconds and peak RSS in KiB
// to RESULT_FILE. Returns the launcher's exit status.
int measure_child_main(int argc, char **argv);

// Describes how the child ended, e.g. "exit status 1" or "signal 9".
std::string describe_end(const ChildResult &result);

} // namespace bench
