// SPDX-License-Identifier: Apache-2.0
#pragma once

// Where cert_poll's log lines go: stderr always, and on request a file and
// syslog, through spdlog's default logger.

#include "cert_poll/error.hpp"

#include <filesystem>
#include <optional>

namespace cert_poll {

struct LogDestinations {
  std::optional<std::filesystem::path> log_file; // --log-file, appended to
  bool syslog = false;                           // --syslog
};

// Makes the default logger: stderr, plus the file and syslog that
// `destinations` name. Fails with ErrorKind::usage when the log file cannot
// be opened, after which the stderr logger is in place to report it.
Result<void> set_up_logging(const LogDestinations &destinations);

// Sets the level: warnings and errors when `quiet`, debug with timestamps on
// stderr when `debug`, else info.
void set_log_level(bool quiet, bool debug);

} // namespace cert_poll
