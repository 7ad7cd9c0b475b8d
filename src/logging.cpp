// SPDX-License-Identifier: Apache-2.0
#include "cert_poll/logging.hpp"

#include <cerrno>
#include <fcntl.h>
#include <string>
#include <syslog.h>
#include <system_error>
#include <unistd.h>

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/syslog_sink.h>
#include <spdlog/spdlog.h>

namespace cert_poll {

namespace {

// Opens the --log-file sink for appending. The file is opened here first,
// because spdlog would create missing folders and its error names no fix.
Result<spdlog::sink_ptr> open_log_file(const std::filesystem::path &path) {
  std::string cause;
  int fd = ::open(
      path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
  if (fd < 0) {
    cause = std::system_category().message(errno);
  } else {
    ::close(fd);
    try {
      auto sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(
          path.string(), false);
      sink->set_pattern("%Y-%m-%dT%H:%M:%S.%e%z cert_poll[%P]: %l: %v");
      return sink;
    } catch (const spdlog::spdlog_ex &exception) {
      cause = exception.what();
    }
  }
  return make_error(ErrorKind::usage,
                    "failed to open log file '" + path.string() + "' (" +
                        cause +
                        "): check that the folder exists and that this user "
                        "can write the file, or pass --log-file PATH with "
                        "another path");
}

} // namespace

// Logs to stderr, the first sink, and with --log-file and --syslog also to
// a file and to syslog. Fails when the log file cannot be opened, after
// which the stderr logger is in place to report it.
Result<void> set_up_logging(const LogDestinations &destinations) {
  auto stderr_sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  stderr_sink->set_pattern("cert_poll: %^%l%$: %v");
  auto logger = std::make_shared<spdlog::logger>("cert_poll", stderr_sink);
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::info);
  // A run that is killed keeps the lines it logged.
  logger->flush_on(spdlog::level::trace);

  if (destinations.log_file) {
    auto file_sink = open_log_file(*destinations.log_file);
    if (!file_sink) {
      return std::unexpected(file_sink.error());
    }
    logger->sinks().push_back(*file_sink);
  }
  if (destinations.syslog) {
    // syslog adds the time, the ident and the PID, and takes the priority
    // from the level, so the sink sends only the message.
    logger->sinks().push_back(std::make_shared<spdlog::sinks::syslog_sink_mt>(
        "cert_poll", LOG_PID, LOG_DAEMON, false));
  }
  return {};
}

void set_log_level(bool quiet, bool debug) {
  if (quiet) {
    spdlog::set_level(spdlog::level::warn);
  } else if (debug) {
    spdlog::set_level(spdlog::level::debug);
    // Only the stderr sink: the file and syslog keep their own patterns.
    spdlog::default_logger()->sinks().front()->set_pattern(
        "%Y-%m-%dT%H:%M:%S.%e cert_poll[%P]: %^%l%$: %v");
  }
}

} // namespace cert_poll
