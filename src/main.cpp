// SPDX-License-Identifier: Apache-2.0
// The cert_poll command line: flags, exit status and the order of the steps.
// The work itself is in cert_poll_lib.

#include "cert_poll/ca_handler.hpp"
#include "cert_poll/config.hpp"
#include "cert_poll/logging.hpp"
#include "cert_poll/poller.hpp"
#include "cert_poll/report.hpp"
#include "cert_poll/run_lock.hpp"
#include "cert_poll/stop_signal.hpp"
#include "cert_poll/store.hpp"
#include "cert_poll/version.hpp"

#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <optional>
#include <string>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

namespace {

using namespace cert_poll;

enum ExitStatus {
  exit_ok = 0,
  exit_poll_failed = 1,
  exit_usage = 2,
  exit_database = 3,
  // A run stopped by a signal exits with 128 + the signal number, as a
  // shell reports a command that the signal killed.
  exit_signal_base = 128,
};

constexpr const char *k_exit_status_help = R"(Exit status:
  0  the pass completed, whatever states the CA reported, or another run
     holds the lock file
  1  one or more requests could not be polled or stored (CA unreachable,
     bad response, failed check), or --max-runtime ran out before all were
     polled; they are polled again next run
  2  usage or configuration error, a lock file or --log-file that cannot
     be used, or a --metrics-file that cannot be written after a pass that
     otherwise exits 0
  3  database error: missing, not SQLite, not acme2certifier's, not
     writable, full, or locked by another process past the busy timeout
  130  stopped by SIGINT
  143  stopped by SIGTERM. With either signal (128 + its number) the
       request in progress is dropped, a write in progress completes, and
       the requests left are polled next run)";

struct Arguments {
  Overrides overrides;
  PassOptions pass;
  std::optional<std::filesystem::path> lock_file; // --lock-file
  int max_runtime_seconds = 0;                    // 0: no limit
  int verbosity = 0;
  bool quiet = false;
  bool list = false;                                 // --list
  bool json = false;                                 // --json
  std::optional<std::filesystem::path> metrics_file; // --metrics-file
  std::optional<std::filesystem::path> log_file;     // --log-file
  bool syslog = false;                               // --syslog
};

int exit_status_for(const Error &error) {
  switch (error.kind) {
  case ErrorKind::usage:
  case ErrorKind::config:
    return exit_usage;
  case ErrorKind::database:
  case ErrorKind::busy:
    return exit_database;
  default:
    return exit_poll_failed;
  }
}

int fail(const Error &error) {
  spdlog::error("{}", error.message);
  return exit_status_for(error);
}

// The options for reports and log destinations.
void add_report_options(CLI::App &app, Arguments &arguments) {
  auto *list = app.add_flag(
      "--list",
      arguments.list,
      "print the requests whose order is processing as a table on stdout "
      "(order, certificate, identifiers, age, poll identifier, last error) "
      "and exit, without asking the CA, taking the lock or writing");
  auto *json = app.add_flag("--json",
                            arguments.json,
                            "after the pass, print each request's outcome "
                            "and the totals as one JSON document on stdout");
  auto *metrics =
      app.add_option(
             "--metrics-file",
             arguments.metrics_file,
             "after each pass, replace this file with the pass's metrics in "
             "Prometheus text format, for node_exporter's textfile collector "
             "(name it *.prom)")
          ->type_name("PATH");
  list->excludes(json, metrics);
  app.add_option("--log-file",
                 arguments.log_file,
                 "also append the log lines, with time and PID, to this "
                 "file")
      ->type_name("PATH");
  app.add_flag("--syslog",
               arguments.syslog,
               "also log to syslog (ident cert_poll, facility daemon)");
}

// Accepts a decimal whole number from `minimum` to `maximum`; otherwise the
// message names the value and gives `advice`. CLI11's own conversion would
// also take hexadecimal and surrounding spaces, and its range check calls
// any text that is not a number out of range.
CLI::Validator
whole_number_validator(int minimum, int maximum, std::string advice) {
  auto check = [=](std::string &text) -> std::string {
    if (parse_whole_number(text, minimum, maximum)) {
      return {};
    }
    return "invalid value '" + text + "': " + advice;
  };
  return CLI::Validator(check, "");
}

void add_options(CLI::App &app, Arguments &arguments) {
  app.add_option("--config",
                 arguments.overrides.config_file,
                 "acme2certifier's acme_srv.cfg (default: "
                 "$ACME_SRV_CONFIGFILE)");
  app.add_option("--db",
                 arguments.overrides.db_file,
                 "SQLite database file, instead of [DBhandler] dbfile");
  app.add_option("--handler",
                 arguments.overrides.handler,
                 "CA handler, instead of the one [CAhandler] handler_file "
                 "names (supported: certifier)");

  app.add_flag("--dry-run",
               arguments.pass.dry_run,
               "ask the CA and report what would be written, but write "
               "nothing and take no lock");
  app.add_option("--lock-file",
                 arguments.lock_file,
                 "lock file that keeps a second cert_poll run off the same "
                 "database (default: the database path with '.lock' "
                 "appended). --dry-run takes no lock");
  app.add_option("--order",
                 arguments.pass.order_name,
                 "poll only the order with this name");
  app.add_option("--jobs",
                 arguments.overrides.jobs,
                 "number of requests polled at once, each on its own "
                 "connection to the CA, instead of [cert_poll] jobs "
                 "(default: " +
                     std::to_string(k_default_jobs) + ")")
      ->check(whole_number_validator(1,
                                     k_max_jobs,
                                     "use a whole number from 1 to " +
                                         std::to_string(k_max_jobs)))
      ->type_name("N");
  app.add_option("--max-runtime",
                 arguments.max_runtime_seconds,
                 "seconds after the start at which the run stops: no request "
                 "starts later, the HTTP call in progress is cut short, and "
                 "the requests left are polled next run (exit status 1). 0, "
                 "the default, sets no limit")
      ->check(whole_number_validator(
          0,
          std::numeric_limits<int>::max(),
          "use a whole number of seconds, or 0 for no limit"))
      ->type_name("SECONDS");

  auto *verbose = app.add_flag("-v,--verbose",
                               arguments.verbosity,
                               "log every request and HTTP call (debug level)");
  auto *quiet = app.add_flag(
      "-q,--quiet", arguments.quiet, "log only warnings and errors");
  verbose->excludes(quiet);

  add_report_options(app, arguments);
  app.set_version_flag("--version", std::string("cert_poll ") + version);
  app.footer(k_exit_status_help);
}

// Logs the summary at info level when something changed or failed, or when
// stderr is a terminal. Otherwise it goes to debug level, so that cron mails
// only news unless -v is given.
void log_summary(const PassSummary &summary, bool dry_run) {
  std::string line = fmt::format(
      "{}{} issued, {} still pending, {} rejected, {} failed, {} skipped, {} "
      "not polled",
      dry_run ? "dry run, nothing written: " : "",
      summary.issued,
      summary.pending,
      summary.rejected,
      summary.failed,
      summary.skipped,
      summary.not_polled);
  bool news =
      summary.issued + summary.rejected + summary.failed + summary.not_polled >
      0;
  if (news || isatty(STDERR_FILENO) == 1) {
    spdlog::info("{}", line);
  } else {
    spdlog::debug("{}", line);
  }
}

// Takes the run lock before a pass that writes and stores it in `lock`.
// Returns the exit status when the run must stop: on an error, or with
// exit_ok when another run holds the lock. A dry run writes nothing, so it
// takes no lock and is not kept waiting by one.
std::optional<int> lock_run(const Arguments &arguments,
                            const Config &config,
                            std::optional<RunLock> &lock) {
  if (arguments.pass.dry_run) {
    return std::nullopt;
  }
  std::filesystem::path lock_file =
      arguments.lock_file.value_or(default_lock_file(config.db_file));
  auto acquired = RunLock::try_acquire(lock_file);
  if (!acquired) {
    return fail(acquired.error());
  }
  if (!*acquired) {
    // Info level: the default level prints this one line and -q hides it.
    spdlog::info("another cert_poll run holds the lock on '{}', so this run "
                 "exits without polling",
                 lock_file.string());
    return exit_ok;
  }
  lock = std::move(*acquired);
  return std::nullopt;
}

// The pass options with `jobs`, the --max-runtime deadline, counted from
// `start`, and the flag of the signal handlers.
PassOptions pass_options(const Arguments &arguments,
                         int jobs,
                         std::chrono::steady_clock::time_point start) {
  PassOptions options = arguments.pass;
  if (arguments.max_runtime_seconds > 0) {
    options.deadline =
        start + std::chrono::seconds(arguments.max_runtime_seconds);
  }
  options.stop_requested = &stop_requested();
  options.jobs = jobs;
  // Only --json prints each request, so without it no report is kept and
  // memory does not grow with the number of requests.
  options.keep_reports = arguments.json;
  return options;
}

int exit_status_after(const PassSummary &summary) {
  if (const int signal_number = stop_signal(); signal_number != 0) {
    const int status = exit_signal_base + signal_number;
    spdlog::warn("received {}: exiting with status {}",
                 signal_number == SIGINT ? "SIGINT" : "SIGTERM",
                 status);
    return status;
  }
  if (summary.database_error) {
    return exit_database;
  }
  if (summary.failed > 0 || summary.not_polled > 0) {
    return exit_poll_failed;
  }
  return exit_ok;
}

// Prints the --list table from a read-only connection: no CA, no lock, no
// write.
int list_requests(const Config &config,
                  const std::optional<std::string> &order_name) {
  StoreOptions options;
  options.read_only = true;
  auto store = Store::open(config.db_file, options);
  if (!store) {
    return fail(store.error());
  }
  if (order_name) {
    auto status = store->order_status(*order_name);
    if (!status) {
      return fail(status.error());
    }
    if (!*status) {
      return fail(Error{ErrorKind::usage,
                        "order '" + *order_name + "' not found in '" +
                            config.db_file.string() +
                            "': check the name in the orders table"});
    }
  }

  auto requests = store->processing_requests(order_name);
  if (!requests) {
    return fail(requests.error());
  }
  std::fputs(
      format_request_table(*requests, std::chrono::system_clock::now()).c_str(),
      stdout);
  return exit_ok;
}

// Counts the requests still processing in the whole database, for the
// cert_poll_pending_requests gauge. Returns nullopt when that read fails.
std::optional<std::size_t> count_processing(Store &store) {
  auto count = store.count_processing();
  if (!count) {
    spdlog::warn("failed to count the requests still processing, so the "
                 "metrics file has no cert_poll_pending_requests: {}",
                 count.error().message);
    return std::nullopt;
  }
  return *count;
}

// Prints --json and writes --metrics-file after a pass. Returns `status`,
// the pass's exit status, or exit_usage when the metrics file cannot be
// written and `status` is exit_ok. A pass that failed keeps its status,
// which already reports a failure.
int report_pass(const Arguments &arguments,
                Store &store,
                const PassSummary &summary,
                std::chrono::duration<double> duration,
                int status) {
  if (arguments.json) {
    std::fputs(
        format_pass_json(summary, arguments.pass.dry_run, duration).c_str(),
        stdout);
    std::fflush(stdout);
  }
  if (!arguments.metrics_file) {
    return status;
  }
  PassMetrics metrics{summary,
                      duration,
                      std::chrono::system_clock::now(),
                      count_processing(store)};
  auto written = write_metrics_file(*arguments.metrics_file, metrics);
  if (!written) {
    int metrics_status = fail(written.error());
    return status == exit_ok ? metrics_status : status;
  }
  return status;
}

int run(const Arguments &arguments) {
  const auto start = std::chrono::steady_clock::now();
  auto environment = process_environment();
  auto config = load_config(arguments.overrides, environment);
  if (!config) {
    return fail(config.error());
  }
  set_log_level(arguments.quiet, arguments.verbosity > 0 || config->debug);
  if (arguments.list) {
    return list_requests(*config, arguments.pass.order_name);
  }

  auto handler = make_ca_handler(*config, environment);
  if (!handler) {
    return fail(handler.error());
  }

  StoreOptions store_options;
  store_options.read_only = arguments.pass.dry_run;
  auto store = Store::open(config->db_file, store_options);
  if (!store) {
    return fail(store.error());
  }

  // Taken after Store::open, which writes nothing, so that a missing or
  // unwritable database is still reported as a database error (exit 3)
  // and no lock file appears beside a database that does not exist.
  std::optional<RunLock> lock;
  if (auto stop = lock_run(arguments, *config, lock)) {
    return *stop;
  }

  const auto pass_start = std::chrono::steady_clock::now();
  auto summary =
      run_pass(*store, **handler, pass_options(arguments, config->jobs, start));
  if (!summary) {
    return fail(summary.error());
  }
  std::chrono::duration<double> duration =
      std::chrono::steady_clock::now() - pass_start;
  log_summary(*summary, arguments.pass.dry_run);
  return report_pass(
      arguments, *store, *summary, duration, exit_status_after(*summary));
}

} // namespace

int main(int argc, char **argv) {
  CLI::App app{"Poll the CA for acme2certifier orders that wait in status "
               "'processing', store issued certificates and rejections, and "
               "set each order to valid or invalid.",
               "cert_poll"};
  Arguments arguments;
  add_options(app, arguments);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError &error) {
    int status = app.exit(error);
    return status == 0 ? exit_ok : exit_usage;
  }

  if (auto logging = set_up_logging({arguments.log_file, arguments.syslog});
      !logging) {
    return fail(logging.error());
  }
  install_stop_handlers();
  return run(arguments);
}
