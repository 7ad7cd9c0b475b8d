// SPDX-License-Identifier: Apache-2.0
// The cert_poll command line: flags, logging, exit status. The work itself
// is in cert_poll_lib.

#include "cert_poll/ca_handler.hpp"
#include "cert_poll/config.hpp"
#include "cert_poll/poller.hpp"
#include "cert_poll/run_lock.hpp"
#include "cert_poll/store.hpp"
#include "cert_poll/version.hpp"

#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace {

using namespace cert_poll;

enum ExitStatus {
  exit_ok = 0,
  exit_poll_failed = 1,
  exit_usage = 2,
  exit_database = 3,
};

constexpr const char *k_exit_status_help = R"(Exit status:
  0  the pass completed, whatever states the CA reported, or another run
     holds the lock file
  1  one or more requests could not be polled or stored (CA unreachable,
     bad response, failed check); they are polled again next run
  2  usage or configuration error, or a lock file that cannot be used
  3  database error: missing, not SQLite, not acme2certifier's, not
     writable, or locked by another process past the busy timeout)";

struct Arguments {
  Overrides overrides;
  PassOptions pass;
  std::optional<std::filesystem::path> lock_file; // --lock-file
  int verbosity = 0;
  bool quiet = false;
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

void set_up_logging() {
  auto logger = spdlog::stderr_color_mt("cert_poll");
  logger->set_pattern("cert_poll: %^%l%$: %v");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::info);
}

void set_log_level(const Arguments &arguments, const Config &config) {
  if (arguments.quiet) {
    spdlog::set_level(spdlog::level::warn);
  } else if (arguments.verbosity > 0 || config.debug) {
    spdlog::set_level(spdlog::level::debug);
    spdlog::default_logger()->set_pattern(
        "%Y-%m-%dT%H:%M:%S.%e cert_poll[%P]: %^%l%$: %v");
  }
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
  auto *verbose = app.add_flag("-v,--verbose",
                               arguments.verbosity,
                               "log every request and HTTP call (debug level)");
  auto *quiet = app.add_flag(
      "-q,--quiet", arguments.quiet, "log only warnings and errors");
  verbose->excludes(quiet);
  app.set_version_flag("--version", std::string("cert_poll ") + version);
  app.footer(k_exit_status_help);
}

// Logs the summary at info level when something changed or failed, or when
// stderr is a terminal. Otherwise it goes to debug level, so that cron mails
// only news unless -v is given.
void log_summary(const PassSummary &summary, bool dry_run) {
  std::string line = fmt::format(
      "{}{} issued, {} still pending, {} rejected, {} failed, {} skipped",
      dry_run ? "dry run, nothing written: " : "",
      summary.issued,
      summary.pending,
      summary.rejected,
      summary.failed,
      summary.skipped);
  bool news = summary.issued + summary.rejected + summary.failed > 0;
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

int run(const Arguments &arguments) {
  auto environment = process_environment();
  auto config = load_config(arguments.overrides, environment);
  if (!config) {
    return fail(config.error());
  }
  set_log_level(arguments, *config);

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

  auto summary = run_pass(*store, **handler, arguments.pass);
  if (!summary) {
    return fail(summary.error());
  }
  log_summary(*summary, arguments.pass.dry_run);
  if (summary->database_error) {
    return exit_database;
  }
  return summary->failed > 0 ? exit_poll_failed : exit_ok;
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

  set_up_logging();
  return run(arguments);
}
