// SPDX-License-Identifier: Apache-2.0
// The cert_poll binary as an administrator runs it: flags, exit statuses,
// messages, and a smoke test on copies of the example databases against the
// in-process demo CA.

#include "cert_poll/run_lock.hpp"
#include "cert_poll/x509.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sqlite3.h>

#include "demo_ca.hpp"
#include "support/acme_db.hpp"
#include "support/test_support.hpp"

namespace {

namespace fs = std::filesystem;
using test_support::run_command;
using test_support::shell_quote;

constexpr const char *k_password = "cli-test-password-91c2";

fs::path source_dir() {
  return CERT_POLL_SOURCE_DIR;
}

// Runs cert_poll behind `prefix` (e.g. a command that changes the user).
test_support::CommandResult run_cert_poll_as(const std::string &prefix,
                                             const std::string &arguments) {
  return run_command("DEMO_CA_PASSWORD=" + std::string(k_password) + " " +
                     prefix + shell_quote(CERT_POLL_BINARY) + " " + arguments +
                     " 2>&1");
}

test_support::CommandResult run_cert_poll(const std::string &arguments) {
  return run_cert_poll_as("", arguments);
}

// Returns order name -> status name for every order of an example database.
std::map<std::string, std::string> order_states(const fs::path &db) {
  auto result = run_command(
      "sqlite3 " + shell_quote(db.string()) +
      " \"SELECT o.name || '=' || s.name FROM orders o JOIN status s ON "
      "s.id = o.status_id\"");
  std::map<std::string, std::string> states;
  std::size_t start = 0;
  const std::string &text = result.output;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    std::string line = text.substr(start, end - start);
    std::size_t equals = line.find('=');
    if (equals != std::string::npos) {
      states[line.substr(0, equals)] = line.substr(equals + 1);
    }
    start = end == std::string::npos ? text.size() : end + 1;
  }
  return states;
}

std::string dump(const fs::path &db) {
  return run_command("sqlite3 " + shell_quote(db.string()) + " .dump").output;
}

TEST(CommandLine, HelpListsExitStatuses) {
  auto result = run_cert_poll("--help");

  EXPECT_EQ(result.exit_status, 0);
  EXPECT_NE(result.output.find("Exit status:"), std::string::npos);
  EXPECT_NE(result.output.find("3  database error"), std::string::npos);
  EXPECT_NE(result.output.find("--dry-run"), std::string::npos);
}

TEST(CommandLine, HelpDescribesLockFile) {
  auto result = run_cert_poll("--help");

  EXPECT_EQ(result.exit_status, 0);
  EXPECT_NE(result.output.find("--lock-file"), std::string::npos)
      << result.output;
  EXPECT_NE(result.output.find("--dry-run takes no lock"), std::string::npos)
      << result.output;
}

TEST(CommandLine, VersionPrintsVersion) {
  auto result = run_cert_poll("--version");

  EXPECT_EQ(result.exit_status, 0);
  EXPECT_EQ(result.output.rfind("cert_poll ", 0), 0u) << result.output;
}

TEST(CommandLine, UnknownOptionIsUsageError) {
  auto result = run_cert_poll("--no-such-flag");

  EXPECT_EQ(result.exit_status, 2);
}

TEST(CommandLine, MissingConfigIsUsageError) {
  auto result = run_command("env -u ACME_SRV_CONFIGFILE " +
                            shell_quote(CERT_POLL_BINARY) + " 2>&1");

  EXPECT_EQ(result.exit_status, 2);
  EXPECT_NE(result.output.find("--config"), std::string::npos) << result.output;
}

TEST(CommandLine, UnsupportedHandlerNamesSupportedOnes) {
  test_support::TempDir dir;
  test_support::write_file(dir / "acme_srv.cfg",
                           "[DBhandler]\ndbfile: " + (dir / "x.db").string() +
                               "\n[CAhandler]\nhandler_file: "
                               "examples/ca_handler/xca_ca_handler.py\n");

  auto result =
      run_cert_poll("--config " + shell_quote((dir / "acme_srv.cfg").string()));

  EXPECT_EQ(result.exit_status, 2);
  EXPECT_NE(result.output.find("xca_ca_handler.py"), std::string::npos)
      << result.output;
  EXPECT_NE(result.output.find("'certifier'"), std::string::npos)
      << result.output;
}

// The example database and its demo CA requests, with the poll identifiers
// moved to the port of an in-process demo CA.
class ExampleDatabase : public ::testing::Test {
protected:
  void SetUp() override {
    demo_ca::Options options;
    options.password = k_password;
    m_ca = std::make_unique<demo_ca::DemoCa>(options);
    m_ca->start();
    test_support::write_file(m_dir / "root.pem", m_ca->root_pem());

    auto requests = nlohmann::json::parse(test_support::read_file(
        source_dir() / "examples" / "demo_ca_requests.json"));
    for (const auto &request : requests.at("requests")) {
      auto der =
          cert_poll::x509::decode_base64(request.at("csr").get<std::string>());
      ASSERT_TRUE(der.has_value());
      m_ca->add_request(
          request.at("id").get<std::string>(),
          *der,
          demo_ca::parse_behaviour(request.at("behaviour").get<std::string>()));
    }
  }

  // Copies an example database and points its poll identifiers at the
  // in-process demo CA.
  fs::path copy_example(const std::string &name) {
    fs::path db = m_dir / name;
    fs::copy_file(source_dir() / "examples" / name, db);
    std::string sql = "UPDATE certificate SET poll_identifier = replace("
                      "poll_identifier, 'https://127.0.0.1:18443', '" +
                      m_ca->base_url() + "')";
    auto result = run_command("sqlite3 " + shell_quote(db.string()) + " " +
                              shell_quote(sql));
    EXPECT_EQ(result.exit_status, 0);
    return db;
  }

  fs::path write_config(const fs::path &db, const std::string &extra = "") {
    fs::path config = m_dir / "acme_srv.cfg";
    test_support::write_file(
        config,
        "[DEFAULT]\ndebug: False\n\n[DBhandler]\ndbfile: " + db.string() +
            "\n\n[CAhandler]\nhandler_file: "
            "examples/ca_handler/certifier_ca_handler.py\napi_host: " +
            m_ca->base_url() +
            "\napi_user: demo\napi_password_variable: "
            "DEMO_CA_PASSWORD\nca_bundle: " +
            (m_dir / "root.pem").string() + "\n" + extra);
    return config;
  }

  test_support::TempDir m_dir;
  std::unique_ptr<demo_ca::DemoCa> m_ca;
};

TEST_F(ExampleDatabase, PassSetsEveryOrderState) {
  fs::path db = copy_example("acme_srv.db");
  fs::path config = write_config(db);

  auto result = run_cert_poll("--config " + shell_quote(config.string()));

  EXPECT_EQ(result.exit_status, 0) << result.output;
  auto states = order_states(db);
  EXPECT_EQ(states["Ord1Approved"], "valid");
  EXPECT_EQ(states["Ord2Approved"], "valid");
  EXPECT_EQ(states["Ord3Rejected"], "invalid");
  EXPECT_EQ(states["Ord4Pending"], "processing");
  EXPECT_EQ(states["Ord5NoPollId"], "processing");
  EXPECT_EQ(states["Ord6Valid"], "valid");
  EXPECT_EQ(states["Ord7Invalid"], "invalid");
  EXPECT_NE(result.output.find("2 issued"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("1 skipped"), std::string::npos)
      << result.output;
}

TEST_F(ExampleDatabase, SecondPassChangesNothing) {
  fs::path db = copy_example("acme_srv.db");
  fs::path config = write_config(db);
  run_cert_poll("--config " + shell_quote(config.string()));
  std::string after_first = dump(db);

  auto second = run_cert_poll("--config " + shell_quote(config.string()));

  EXPECT_EQ(second.exit_status, 0) << second.output;
  EXPECT_EQ(dump(db), after_first);
}

TEST_F(ExampleDatabase, DryRunWritesNothing) {
  fs::path db = copy_example("acme_srv.db");
  fs::path config = write_config(db);
  std::string before = dump(db);

  auto result =
      run_cert_poll("--dry-run --config " + shell_quote(config.string()));

  EXPECT_EQ(result.exit_status, 0) << result.output;
  EXPECT_EQ(dump(db), before);
  EXPECT_NE(result.output.find("dry run"), std::string::npos) << result.output;
}

TEST_F(ExampleDatabase, DbOptionOverridesConfig) {
  fs::path db = copy_example("acme_srv.db");
  fs::path config = write_config(m_dir / "not-there.db");

  auto result = run_cert_poll("--db " + shell_quote(db.string()) +
                              " --config " + shell_quote(config.string()));

  EXPECT_EQ(result.exit_status, 0) << result.output;
  EXPECT_EQ(order_states(db)["Ord1Approved"], "valid");
}

TEST_F(ExampleDatabase, OldSchemaExampleWorksUnchanged) {
  fs::path db = copy_example("acme_srv_2020.db");
  fs::path config = write_config(db);
  std::string schema_before =
      run_command("sqlite3 " + shell_quote(db.string()) + " .schema").output;

  auto result = run_cert_poll("--config " + shell_quote(config.string()));

  EXPECT_EQ(result.exit_status, 0) << result.output;
  auto states = order_states(db);
  EXPECT_EQ(states["Old1Approved"], "valid");
  EXPECT_EQ(states["Old2Rejected"], "invalid");
  EXPECT_EQ(states["Old3Pending"], "processing");
  EXPECT_EQ(
      run_command("sqlite3 " + shell_quote(db.string()) + " .schema").output,
      schema_before);
}

TEST_F(ExampleDatabase, MissingDatabaseIsDatabaseError) {
  fs::path missing = m_dir / "missing.db";
  fs::path config = write_config(missing);

  auto result = run_cert_poll("--config " + shell_quote(config.string()));

  EXPECT_EQ(result.exit_status, 3) << result.output;
  EXPECT_NE(result.output.find(missing.string()), std::string::npos)
      << result.output;
  EXPECT_FALSE(fs::exists(missing));
}

TEST_F(ExampleDatabase, DebugLogHasNoSecret) {
  fs::path db = copy_example("acme_srv.db");
  fs::path config = write_config(db);

  auto result = run_cert_poll("-v --config " + shell_quote(config.string()));

  EXPECT_EQ(result.exit_status, 0) << result.output;
  EXPECT_NE(result.output.find("debug"), std::string::npos);
  EXPECT_EQ(result.output.find(k_password), std::string::npos);
  EXPECT_EQ(result.output.find("Authorization"), std::string::npos);
  EXPECT_EQ(result.output.find("Basic "), std::string::npos);
}

TEST_F(ExampleDatabase, ConfigDebugTurnsOnDebugLog) {
  fs::path db = copy_example("acme_srv.db");
  fs::path config = write_config(db);
  std::string text = test_support::read_file(config);
  text.replace(text.find("debug: False"), 12, "debug: True");
  test_support::write_file(config, text);

  auto result = run_cert_poll("--config " + shell_quote(config.string()));

  EXPECT_EQ(result.exit_status, 0) << result.output;
  EXPECT_NE(result.output.find(": debug: "), std::string::npos)
      << result.output;
}

TEST_F(ExampleDatabase, QuietKeepsOnlyWarningsAndErrors) {
  fs::path db = copy_example("acme_srv.db");
  fs::path config = write_config(db);

  auto result = run_cert_poll("-q --config " + shell_quote(config.string()));

  EXPECT_EQ(result.exit_status, 0) << result.output;
  EXPECT_EQ(result.output, "");
  EXPECT_EQ(order_states(db)["Ord1Approved"], "valid");
}

TEST_F(ExampleDatabase, NothingNewPrintsNothingOffTerminal) {
  fs::path db = copy_example("acme_srv.db");
  fs::path config = write_config(db);
  run_cert_poll("--config " + shell_quote(config.string()));

  auto second = run_cert_poll("--config " + shell_quote(config.string()));

  EXPECT_EQ(second.exit_status, 0) << second.output;
  EXPECT_EQ(second.output, "") << "cron mails every line";
}

TEST_F(ExampleDatabase, UnwritableDatabaseFailsBeforePolling) {
  fs::path db = copy_example("acme_srv.db");
  fs::path config = write_config(db);
  fs::permissions(db,
                  fs::perms::owner_read | fs::perms::group_read |
                      fs::perms::others_read);
  fs::permissions(m_dir.path(),
                  fs::perms::owner_all | fs::perms::group_read |
                      fs::perms::group_exec | fs::perms::others_read |
                      fs::perms::others_exec);
  // Root may write any file, so run as nobody when the test runs as root.
  std::string as_user =
      geteuid() == 0 ? "setpriv --reuid=65534 --regid=65534 --clear-groups "
                     : "";

  auto result =
      run_cert_poll_as(as_user, "--config " + shell_quote(config.string()));

  EXPECT_EQ(result.exit_status, 3) << result.output;
  EXPECT_NE(result.output.find("is not writable by this user"),
            std::string::npos)
      << result.output;
  EXPECT_TRUE(m_ca->received().empty()) << "the CA was asked in vain";
}

TEST_F(ExampleDatabase, LockedDatabaseGivesExitThree) {
  fs::path db = copy_example("acme_srv.db");
  fs::path config = write_config(db);
  std::string before = dump(db);
  sqlite3 *other = nullptr;
  ASSERT_EQ(sqlite3_open(db.c_str(), &other), SQLITE_OK);
  // A RESERVED lock: cert_poll can list the requests but cannot write.
  ASSERT_EQ(sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr),
            SQLITE_OK);

  auto result = run_cert_poll("--config " + shell_quote(config.string()));
  sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(other);

  EXPECT_EQ(result.exit_status, 3) << result.output;
  EXPECT_NE(result.output.find("locked by another process"), std::string::npos)
      << result.output;
  EXPECT_EQ(dump(db), before);
}

TEST_F(ExampleDatabase, FailedRequestGivesExitOne) {
  fs::path db = copy_example("acme_srv.db");
  fs::path config = write_config(db);
  m_ca->set_behaviour("req-crtpending4", demo_ca::Behaviour::server_error);

  auto result = run_cert_poll("--config " + shell_quote(config.string()));

  EXPECT_EQ(result.exit_status, 1) << result.output;
  EXPECT_EQ(order_states(db)["Ord4Pending"], "processing");
  EXPECT_EQ(order_states(db)["Ord1Approved"], "valid");
}

// Takes the run lock in this process, as a running cert_poll would hold it.
std::optional<cert_poll::RunLock> hold_lock(const fs::path &lock_file) {
  auto lock = cert_poll::RunLock::try_acquire(lock_file);
  EXPECT_TRUE(lock.has_value()) << lock.error().message;
  if (!lock.has_value()) {
    return std::nullopt;
  }
  return std::move(*lock);
}

long line_count(const std::string &output) {
  return std::count(output.begin(), output.end(), '\n');
}

TEST_F(ExampleDatabase, HeldLockSkipsRunWithOneLine) {
  fs::path db = copy_example("acme_srv.db");
  fs::path config = write_config(db);
  std::string before = dump(db);
  fs::path lock_file = db.string() + ".lock";
  auto lock = hold_lock(lock_file);
  ASSERT_TRUE(lock.has_value());

  auto result = run_cert_poll("--config " + shell_quote(config.string()));

  EXPECT_EQ(result.exit_status, 0) << result.output;
  EXPECT_EQ(line_count(result.output), 1) << result.output;
  EXPECT_EQ(result.output.rfind("cert_poll: info: ", 0), 0u) << result.output;
  EXPECT_NE(
      result.output.find("holds the lock on '" + lock_file.string() + "'"),
      std::string::npos)
      << result.output;
  EXPECT_EQ(dump(db), before);
  EXPECT_TRUE(m_ca->received().empty()) << "the CA was asked";
}

TEST_F(ExampleDatabase, PassLeavesLockFileBesideDatabase) {
  fs::path db = copy_example("acme_srv.db");
  fs::path config = write_config(db);

  auto result = run_cert_poll("--config " + shell_quote(config.string()));

  EXPECT_EQ(result.exit_status, 0) << result.output;
  EXPECT_TRUE(fs::exists(db.string() + ".lock"));
  EXPECT_EQ(
      run_command("flock -n " + shell_quote(db.string() + ".lock") + " true")
          .exit_status,
      0)
      << "the lock must be released at exit";
}

TEST_F(ExampleDatabase, LockFileOptionMovesLock) {
  fs::path db = copy_example("acme_srv.db");
  fs::path config = write_config(db);
  auto default_lock = hold_lock(db.string() + ".lock");
  ASSERT_TRUE(default_lock.has_value());
  fs::path elsewhere = m_dir / "elsewhere.lock";

  auto result = run_cert_poll("--lock-file " + shell_quote(elsewhere.string()) +
                              " --config " + shell_quote(config.string()));

  EXPECT_EQ(result.exit_status, 0) << result.output;
  EXPECT_EQ(order_states(db)["Ord1Approved"], "valid");
  EXPECT_TRUE(fs::exists(elsewhere));
}

TEST_F(ExampleDatabase, HeldLockFileOptionSkipsRun) {
  fs::path db = copy_example("acme_srv.db");
  fs::path config = write_config(db);
  std::string before = dump(db);
  fs::path elsewhere = m_dir / "elsewhere.lock";
  auto lock = hold_lock(elsewhere);
  ASSERT_TRUE(lock.has_value());

  auto result = run_cert_poll("--lock-file " + shell_quote(elsewhere.string()) +
                              " --config " + shell_quote(config.string()));

  EXPECT_EQ(result.exit_status, 0) << result.output;
  EXPECT_NE(
      result.output.find("holds the lock on '" + elsewhere.string() + "'"),
      std::string::npos)
      << result.output;
  EXPECT_EQ(dump(db), before);
  EXPECT_FALSE(fs::exists(db.string() + ".lock"));
}

TEST_F(ExampleDatabase, DryRunIgnoresHeldLock) {
  fs::path db = copy_example("acme_srv.db");
  fs::path config = write_config(db);
  auto lock = hold_lock(db.string() + ".lock");
  ASSERT_TRUE(lock.has_value());

  auto result =
      run_cert_poll("--dry-run --config " + shell_quote(config.string()));

  EXPECT_EQ(result.exit_status, 0) << result.output;
  EXPECT_NE(result.output.find("dry run"), std::string::npos) << result.output;
  EXPECT_EQ(result.output.find("holds the lock"), std::string::npos)
      << result.output;
  EXPECT_FALSE(m_ca->received().empty()) << "the dry run did not ask the CA";
}

TEST_F(ExampleDatabase, DryRunCreatesNoLockFile) {
  fs::path db = copy_example("acme_srv.db");
  fs::path config = write_config(db);

  auto result =
      run_cert_poll("--dry-run --config " + shell_quote(config.string()));

  EXPECT_EQ(result.exit_status, 0) << result.output;
  EXPECT_FALSE(fs::exists(db.string() + ".lock"));
}

TEST_F(ExampleDatabase, UnopenableLockFileIsUsageError) {
  fs::path db = copy_example("acme_srv.db");
  fs::path config = write_config(db);
  std::string before = dump(db);
  fs::path lock_file = m_dir / "no-such-folder" / "cert_poll.lock";

  auto result = run_cert_poll("--lock-file " + shell_quote(lock_file.string()) +
                              " --config " + shell_quote(config.string()));

  EXPECT_EQ(result.exit_status, 2) << result.output;
  EXPECT_NE(result.output.find("'" + lock_file.string() + "'"),
            std::string::npos)
      << result.output;
  EXPECT_NE(result.output.find("--lock-file PATH"), std::string::npos)
      << result.output;
  EXPECT_EQ(dump(db), before);
  EXPECT_TRUE(m_ca->received().empty()) << "the CA was asked";
}

TEST_F(ExampleDatabase, MissingDatabaseGetsNoLockFile) {
  fs::path missing = m_dir / "missing.db";
  fs::path config = write_config(missing);

  auto result = run_cert_poll("--config " + shell_quote(config.string()));

  EXPECT_EQ(result.exit_status, 3) << result.output;
  EXPECT_FALSE(fs::exists(missing.string() + ".lock"));
}

TEST(CommandLine, HelpDescribesMaxRuntimeAndSignals) {
  auto result = run_cert_poll("--help");

  EXPECT_EQ(result.exit_status, 0);
  EXPECT_NE(result.output.find("--max-runtime SECONDS"), std::string::npos)
      << result.output;
  EXPECT_NE(result.output.find("130  stopped by SIGINT"), std::string::npos)
      << result.output;
  EXPECT_NE(result.output.find("143  stopped by SIGTERM"), std::string::npos)
      << result.output;
}

TEST(CommandLine, InvalidJobsIsUsageError) {
  for (const char *value : {"0", "129", "four", "0x10", " 4", "3.5"}) {
    auto result = run_cert_poll("--jobs " + shell_quote(value));

    EXPECT_EQ(result.exit_status, 2) << value << ": " << result.output;
    EXPECT_NE(result.output.find("--jobs: invalid value '" +
                                 std::string(value) +
                                 "': use a whole number from 1 to 128"),
              std::string::npos)
        << value << ": " << result.output;
  }
}

TEST(CommandLine, InvalidMaxRuntimeIsUsageError) {
  for (const char *value : {"-1", "1.5", "soon", "99999999999"}) {
    auto result = run_cert_poll("--max-runtime " + shell_quote(value));

    EXPECT_EQ(result.exit_status, 2) << value << ": " << result.output;
    EXPECT_NE(result.output.find("--max-runtime: invalid value '" +
                                 std::string(value) +
                                 "': use a whole number of seconds"),
              std::string::npos)
        << result.output;
  }
}

// Returns the output of an SQL query on `db`.
std::string query(const fs::path &db, const std::string &sql) {
  return run_command("sqlite3 " + shell_quote(db.string()) + " " +
                     shell_quote(sql))
      .output;
}

constexpr const char *k_valid_without_certificate =
    "SELECT count(*) FROM orders o JOIN status s ON s.id = o.status_id "
    "WHERE s.name = 'valid' AND NOT EXISTS (SELECT 1 FROM certificate c "
    "WHERE c.order_id = o.id AND coalesce(c.cert, '') != '')";

// A signal and the exit status it gives.
struct SignalCase {
  const char *name; // for kill -s and env --default-signal
  int exit_status;
};

void PrintTo(const SignalCase &signal_case, std::ostream *out) {
  *out << signal_case.name;
}

class ExampleDatabaseSignal : public ExampleDatabase,
                              public ::testing::WithParamInterface<SignalCase> {
};

// Sends the signal one second after the start, while the first request is
// in flight, because the demo CA responds to it only after 5 s. With one job
// no other request starts meanwhile.
TEST_P(ExampleDatabaseSignal, StopsCleanlyAndNextRunFinishes) {
  const SignalCase &signal_case = GetParam();
  fs::path db = copy_example("acme_srv.db");
  fs::path config = write_config(db);
  m_ca->set_behaviour("req-crtapproved1", demo_ca::Behaviour::slow);
  // A shell without job control starts background jobs with SIGINT
  // ignored, and cert_poll keeps an ignored signal ignored, so env resets
  // it to the default first.
  std::string script = "DEMO_CA_PASSWORD=" + std::string(k_password) +
                       " env --default-signal=" + signal_case.name + " " +
                       shell_quote(CERT_POLL_BINARY) + " --jobs 1 --config " +
                       shell_quote(config.string()) +
                       " 2>&1 & pid=$!; sleep 1; kill -s " + signal_case.name +
                       " $pid; wait $pid";

  const auto start = std::chrono::steady_clock::now();
  auto stopped = run_command("sh -c " + shell_quote(script));
  const auto elapsed = std::chrono::steady_clock::now() - start;

  EXPECT_EQ(stopped.exit_status, signal_case.exit_status) << stopped.output;
  EXPECT_LT(elapsed, std::chrono::seconds(4))
      << "the transfer in flight was not aborted";
  EXPECT_NE(stopped.output.find("4 of 4 requests not polled: stopped by a "
                                "signal"),
            std::string::npos)
      << stopped.output;
  EXPECT_NE(stopped.output.find("received SIG" + std::string(signal_case.name) +
                                ": exiting with status " +
                                std::to_string(signal_case.exit_status)),
            std::string::npos)
      << stopped.output;
  EXPECT_EQ(query(db, "PRAGMA integrity_check"), "ok\n");
  EXPECT_EQ(query(db, k_valid_without_certificate), "0\n");
  auto states = order_states(db);
  EXPECT_EQ(states["Ord1Approved"], "processing")
      << "the request in flight was stored";
  EXPECT_EQ(states["Ord2Approved"], "processing");
  bool slow_request_sent = false;
  bool next_request_sent = false;
  for (const auto &request : m_ca->received()) {
    slow_request_sent |= request.path == "/v1/requests/req-crtapproved1";
    next_request_sent |= request.path == "/v1/requests/req-crtapproved2";
  }
  EXPECT_TRUE(slow_request_sent) << "the signal came before the first poll";
  EXPECT_FALSE(next_request_sent);

  m_ca->set_behaviour("req-crtapproved1", demo_ca::Behaviour::approve);
  auto next = run_cert_poll("--config " + shell_quote(config.string()));

  EXPECT_EQ(next.exit_status, 0) << next.output;
  states = order_states(db);
  EXPECT_EQ(states["Ord1Approved"], "valid");
  EXPECT_EQ(states["Ord2Approved"], "valid");
  EXPECT_EQ(states["Ord3Rejected"], "invalid");
  EXPECT_EQ(query(db, k_valid_without_certificate), "0\n");
}

INSTANTIATE_TEST_SUITE_P(Signals,
                         ExampleDatabaseSignal,
                         ::testing::Values(SignalCase{"TERM", 143},
                                           SignalCase{"INT", 130}),
                         [](const auto &test_case) {
                           return std::string(test_case.param.name);
                         });

TEST_F(ExampleDatabase, MaxRuntimeLeavesRestForNextRun) {
  fs::path db = copy_example("acme_srv.db");
  fs::path config = write_config(db);
  m_ca->set_behaviour("req-crtapproved1", demo_ca::Behaviour::slow);
  std::string before = dump(db);

  auto result = run_cert_poll("--jobs 1 --max-runtime 1 --config " +
                              shell_quote(config.string()));

  EXPECT_EQ(result.exit_status, 1) << result.output;
  EXPECT_NE(result.output.find("4 of 4 requests not polled: deadline reached "
                               "(--max-runtime)"),
            std::string::npos)
      << result.output;
  EXPECT_NE(result.output.find("4 not polled"), std::string::npos)
      << result.output;
  EXPECT_EQ(dump(db), before);
}

TEST_F(ExampleDatabase, ZeroMaxRuntimeSetsNoLimit) {
  fs::path db = copy_example("acme_srv.db");
  fs::path config = write_config(db);

  auto result =
      run_cert_poll("--max-runtime 0 --config " + shell_quote(config.string()));

  EXPECT_EQ(result.exit_status, 0) << result.output;
  EXPECT_NE(result.output.find("0 not polled"), std::string::npos)
      << result.output;
  EXPECT_EQ(order_states(db)["Ord1Approved"], "valid");
}

// Runs cert_poll and returns its standard output only. Standard error goes
// to `stderr_file`, so that a report on stdout can be parsed.
test_support::CommandResult run_cert_poll_stdout(const std::string &arguments,
                                                 const fs::path &stderr_file) {
  return run_command("DEMO_CA_PASSWORD=" + std::string(k_password) + " " +
                     shell_quote(CERT_POLL_BINARY) + " " + arguments + " 2>" +
                     shell_quote(stderr_file.string()));
}

// Returns the line of `text` that starts with `prefix`, or "" when none does.
std::string line_starting_with(const std::string &text,
                               const std::string &prefix) {
  std::size_t at = text.rfind("\n" + prefix);
  if (text.rfind(prefix, 0) == 0) {
    at = 0;
  } else if (at != std::string::npos) {
    ++at;
  } else {
    return "";
  }
  return text.substr(at, text.find('\n', at) - at);
}

TEST_F(ExampleDatabase, ListShowsProcessingOrdersWithoutCa) {
  fs::path db = copy_example("acme_srv.db");
  fs::path config = write_config(db);
  std::string before = dump(db);

  auto result = run_cert_poll_stdout(
      "--list --config " + shell_quote(config.string()), m_dir / "stderr");

  EXPECT_EQ(result.exit_status, 0) << test_support::read_file(m_dir / "stderr");
  EXPECT_EQ(line_count(result.output), 6) << result.output;
  EXPECT_EQ(result.output.rfind("ORDER ", 0), 0u) << result.output;
  for (const char *order :
       {"Ord1Approved", "Ord2Approved", "Ord3Rejected", "Ord4Pending"}) {
    EXPECT_NE(line_starting_with(result.output, order).find(m_ca->base_url()),
              std::string::npos)
        << order << "\n"
        << result.output;
  }
  std::string no_poll_id = line_starting_with(result.output, "Ord5NoPollId");
  EXPECT_NE(no_poll_id.find("CrtNoPollId5"), std::string::npos)
      << result.output;
  EXPECT_NE(no_poll_id.find("vpn.example.com"), std::string::npos);
  EXPECT_TRUE(no_poll_id.ends_with("  -")) << no_poll_id;
  EXPECT_NE(line_starting_with(result.output, "Ord1Approved")
                .find("www.example.com, example.com"),
            std::string::npos)
      << result.output;
  EXPECT_EQ(result.output.find("Ord6Valid"), std::string::npos);
  EXPECT_EQ(result.output.find("Ord7Invalid"), std::string::npos);
  EXPECT_TRUE(m_ca->received().empty()) << "the CA was asked";
  EXPECT_EQ(dump(db), before);
  EXPECT_FALSE(fs::exists(db.string() + ".lock"));
}

TEST_F(ExampleDatabase, ListWithOrderShowsOnlyIt) {
  fs::path db = copy_example("acme_srv.db");
  fs::path config = write_config(db);

  auto result = run_cert_poll_stdout("--list --order Ord5NoPollId --config " +
                                         shell_quote(config.string()),
                                     m_dir / "stderr");

  EXPECT_EQ(result.exit_status, 0);
  EXPECT_EQ(line_count(result.output), 2) << result.output;
  EXPECT_NE(line_starting_with(result.output, "Ord5NoPollId"), "")
      << result.output;
  EXPECT_TRUE(m_ca->received().empty());
}

TEST_F(ExampleDatabase, ListUnknownOrderIsUsageError) {
  fs::path db = copy_example("acme_srv.db");
  fs::path config = write_config(db);

  auto result = run_cert_poll("--list --order NoSuchOrder --config " +
                              shell_quote(config.string()));

  EXPECT_EQ(result.exit_status, 2) << result.output;
  EXPECT_NE(result.output.find("order 'NoSuchOrder' not found"),
            std::string::npos)
      << result.output;
}

TEST_F(ExampleDatabase, ListReadsReadOnlyDatabase) {
  fs::path db = copy_example("acme_srv.db");
  fs::path config = write_config(db);
  fs::permissions(db,
                  fs::perms::owner_read | fs::perms::group_read |
                      fs::perms::others_read);
  fs::permissions(m_dir.path(),
                  fs::perms::owner_all | fs::perms::group_read |
                      fs::perms::group_exec | fs::perms::others_read |
                      fs::perms::others_exec);
  // Root may write any file, so run as nobody when the test runs as root.
  std::string as_user =
      geteuid() == 0 ? "setpriv --reuid=65534 --regid=65534 --clear-groups "
                     : "";

  auto result = run_cert_poll_as(
      as_user, "--list --config " + shell_quote(config.string()));

  EXPECT_EQ(result.exit_status, 0) << result.output;
  EXPECT_NE(result.output.find("Ord4Pending"), std::string::npos)
      << result.output;
}

TEST_F(ExampleDatabase, ListDatabaseErrorGivesExitThree) {
  fs::path config = write_config(m_dir / "missing.db");

  auto result =
      run_cert_poll("--list --config " + shell_quote(config.string()));

  EXPECT_EQ(result.exit_status, 3) << result.output;
}

TEST_F(ExampleDatabase, JsonTotalsMatchExample) {
  fs::path db = copy_example("acme_srv.db");
  fs::path config = write_config(db);

  auto result = run_cert_poll_stdout(
      "--json --config " + shell_quote(config.string()), m_dir / "stderr");

  EXPECT_EQ(result.exit_status, 0) << test_support::read_file(m_dir / "stderr");
  auto document = nlohmann::json::parse(result.output);
  const auto &totals = document.at("totals");
  EXPECT_EQ(totals.at("issued"), 2) << result.output;
  EXPECT_EQ(totals.at("pending"), 1);
  EXPECT_EQ(totals.at("rejected"), 1);
  EXPECT_EQ(totals.at("failed"), 0);
  EXPECT_EQ(totals.at("skipped"), 1);
  EXPECT_EQ(totals.at("not_polled"), 0);
  EXPECT_EQ(document.at("dry_run"), false);
  EXPECT_GE(document.at("duration_seconds").get<double>(), 0.0);
  ASSERT_EQ(document.at("requests").size(), 4u) << result.output;
  std::map<std::string, std::string> outcomes;
  for (const auto &request : document["requests"]) {
    outcomes[request.at("order").get<std::string>()] =
        request.at("outcome").get<std::string>();
    EXPECT_EQ(request.at("skipped"), false);
  }
  EXPECT_EQ(outcomes["Ord1Approved"], "issued");
  EXPECT_EQ(outcomes["Ord2Approved"], "issued");
  EXPECT_EQ(outcomes["Ord3Rejected"], "rejected");
  EXPECT_EQ(outcomes["Ord4Pending"], "pending");
  // The summary line stays on stderr.
  EXPECT_NE(test_support::read_file(m_dir / "stderr").find("2 issued"),
            std::string::npos);
}

TEST_F(ExampleDatabase, JsonDryRunSaysSo) {
  fs::path db = copy_example("acme_srv.db");
  fs::path config = write_config(db);

  auto result = run_cert_poll_stdout("--json --dry-run --config " +
                                         shell_quote(config.string()),
                                     m_dir / "stderr");

  EXPECT_EQ(result.exit_status, 0);
  auto document = nlohmann::json::parse(result.output);
  EXPECT_EQ(document.at("dry_run"), true);
  EXPECT_EQ(document.at("totals").at("issued"), 2);
  EXPECT_EQ(order_states(db)["Ord1Approved"], "processing");
}

TEST_F(ExampleDatabase, MetricsFileHasPassCounts) {
  fs::path db = copy_example("acme_srv.db");
  fs::path config = write_config(db);
  fs::path metrics = m_dir / "metrics" / "cert_poll.prom";
  fs::create_directory(metrics.parent_path());

  auto result =
      run_cert_poll("--metrics-file " + shell_quote(metrics.string()) +
                    " --config " + shell_quote(config.string()));

  EXPECT_EQ(result.exit_status, 0) << result.output;
  std::string text = test_support::read_file(metrics);
  EXPECT_EQ(line_starting_with(text, "cert_poll_requests{outcome=\"issued\"}"),
            "cert_poll_requests{outcome=\"issued\"} 2")
      << text;
  EXPECT_EQ(line_starting_with(text, "cert_poll_requests{outcome=\"pending\"}"),
            "cert_poll_requests{outcome=\"pending\"} 1");
  EXPECT_EQ(
      line_starting_with(text, "cert_poll_requests{outcome=\"rejected\"}"),
      "cert_poll_requests{outcome=\"rejected\"} 1");
  EXPECT_EQ(line_starting_with(text, "cert_poll_requests{outcome=\"failed\"}"),
            "cert_poll_requests{outcome=\"failed\"} 0");
  EXPECT_EQ(line_starting_with(text, "cert_poll_requests{outcome=\"skipped\"}"),
            "cert_poll_requests{outcome=\"skipped\"} 1");
  // Ord4Pending and Ord5NoPollId stay processing.
  EXPECT_EQ(line_starting_with(text, "cert_poll_pending_requests "),
            "cert_poll_pending_requests 2");
  EXPECT_NE(line_starting_with(text, "cert_poll_pass_duration_seconds "), "");
  EXPECT_NE(
      line_starting_with(text, "cert_poll_last_success_timestamp_seconds "),
      "");
  EXPECT_NE(line_starting_with(text, "cert_poll_last_run_timestamp_seconds "),
            "");
  EXPECT_EQ(std::distance(fs::directory_iterator(metrics.parent_path()),
                          fs::directory_iterator()),
            1)
      << "a temporary file was left";
}

TEST_F(ExampleDatabase, MetricsFileKeepsLastSuccessAfterFailure) {
  fs::path db = copy_example("acme_srv.db");
  fs::path config = write_config(db);
  fs::path metrics = m_dir / "cert_poll.prom";
  test_support::write_file(
      metrics, "cert_poll_last_success_timestamp_seconds 1700000000\n");
  m_ca->set_behaviour("req-crtpending4", demo_ca::Behaviour::server_error);

  auto result =
      run_cert_poll("--metrics-file " + shell_quote(metrics.string()) +
                    " --config " + shell_quote(config.string()));

  EXPECT_EQ(result.exit_status, 1) << result.output;
  std::string text = test_support::read_file(metrics);
  EXPECT_EQ(
      line_starting_with(text, "cert_poll_last_success_timestamp_seconds "),
      "cert_poll_last_success_timestamp_seconds 1700000000")
      << text;
  EXPECT_EQ(line_starting_with(text, "cert_poll_requests{outcome=\"failed\"}"),
            "cert_poll_requests{outcome=\"failed\"} 1");
}

TEST_F(ExampleDatabase, UnwritableMetricsFileIsUsageError) {
  fs::path db = copy_example("acme_srv.db");
  fs::path config = write_config(db);
  fs::path metrics = m_dir / "no-such-folder" / "cert_poll.prom";

  auto result =
      run_cert_poll("--metrics-file " + shell_quote(metrics.string()) +
                    " --config " + shell_quote(config.string()));

  EXPECT_EQ(result.exit_status, 2) << result.output;
  EXPECT_NE(result.output.find("'" + metrics.string() + "'"), std::string::npos)
      << result.output;
  EXPECT_EQ(order_states(db)["Ord1Approved"], "valid")
      << "the pass itself must still run";
}

TEST_F(ExampleDatabase, LogFileAppendsAcrossRuns) {
  fs::path db = copy_example("acme_srv.db");
  fs::path config = write_config(db);
  fs::path log = m_dir / "cert_poll.log";
  std::string arguments = "-v --log-file " + shell_quote(log.string()) +
                          " --config " + shell_quote(config.string());

  auto first = run_cert_poll(arguments);
  std::string after_first = test_support::read_file(log);
  auto second = run_cert_poll(arguments);
  std::string after_second = test_support::read_file(log);

  EXPECT_EQ(first.exit_status, 0) << first.output;
  EXPECT_EQ(second.exit_status, 0) << second.output;
  EXPECT_NE(after_first.find("2 issued"), std::string::npos) << after_first;
  EXPECT_EQ(after_second.rfind(after_first, 0), 0u) << "the log was truncated";
  EXPECT_GT(after_second.size(), after_first.size());
  const std::regex line_form(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})"
                             R"([+-]\d\d:\d\d cert_poll\[\d+\]: )"
                             R"((debug|info|warning|error): .+)");
  std::istringstream lines(after_second);
  for (std::string line; std::getline(lines, line);) {
    EXPECT_TRUE(std::regex_match(line, line_form)) << line;
  }
}

TEST_F(ExampleDatabase, LogFileHasNoSecret) {
  fs::path db = copy_example("acme_srv.db");
  fs::path config = write_config(db);
  fs::path log = m_dir / "cert_poll.log";

  auto result = run_cert_poll("-v --log-file " + shell_quote(log.string()) +
                              " --config " + shell_quote(config.string()));

  EXPECT_EQ(result.exit_status, 0) << result.output;
  std::string text = test_support::read_file(log);
  EXPECT_NE(text.find(": debug: "), std::string::npos);
  EXPECT_EQ(text.find(k_password), std::string::npos);
  EXPECT_EQ(text.find("Authorization"), std::string::npos);
}

// A datagram socket in place of the syslog daemon's /dev/log, so that a test
// can read what cert_poll sends to syslog. On a machine without /dev/log it
// binds that path itself, which needs root, and removes it afterwards. Where
// a syslog daemon owns /dev/log, it binds `path` instead, and command_prefix()
// runs cert_poll in a private mount namespace with `path` mounted over
// /dev/log, so the daemon's socket stays untouched.
class SyslogSocket {
public:
  explicit SyslogSocket(const fs::path &path) {
    m_replaces_daemon = fs::exists("/dev/log");
    m_path = m_replaces_daemon ? path : fs::path("/dev/log");
    m_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::snprintf(
        address.sun_path, sizeof(address.sun_path), "%s", m_path.c_str());
    m_bound = m_fd >= 0 && bind(m_fd,
                                reinterpret_cast<const sockaddr *>(&address),
                                sizeof(address)) == 0;
  }
  ~SyslogSocket() {
    if (m_bound) {
      unlink(m_path.c_str());
    }
    if (m_fd >= 0) {
      close(m_fd);
    }
  }
  SyslogSocket(const SyslogSocket &) = delete;
  SyslogSocket &operator=(const SyslogSocket &) = delete;

  bool bound() const { return m_bound; }

  // Wraps `command` so that its /dev/log is this socket.
  std::string wrap(const std::string &command) const {
    if (!m_replaces_daemon) {
      return command;
    }
    std::string unshare = geteuid() == 0 ? "unshare -m" : "unshare -r -m";
    return unshare + " sh -c " +
           shell_quote("mount --bind " + shell_quote(m_path.string()) +
                       " /dev/log && exec " + command);
  }

  // Returns every datagram received so far, one per line.
  std::string received() const {
    std::string text;
    std::array<char, 4096> buffer{};
    ssize_t count = 0;
    while ((count = recv(m_fd, buffer.data(), buffer.size(), MSG_DONTWAIT)) >
           0) {
      text.append(buffer.data(), static_cast<std::size_t>(count));
      text += '\n';
    }
    return text;
  }

private:
  fs::path m_path;
  bool m_replaces_daemon = false;
  int m_fd = -1;
  bool m_bound = false;
};

TEST_F(ExampleDatabase, SyslogReceivesLogLines) {
  fs::path db = copy_example("acme_srv.db");
  fs::path config = write_config(db);
  SyslogSocket syslog_socket(m_dir / "log.sock");
  ASSERT_TRUE(syslog_socket.bound()) << "binding /dev/log needs root";

  auto result = run_command(
      "DEMO_CA_PASSWORD=" + std::string(k_password) + " " +
      syslog_socket.wrap(shell_quote(CERT_POLL_BINARY) + " --syslog --config " +
                         shell_quote(config.string())) +
      " 2>&1");

  EXPECT_EQ(result.exit_status, 0) << result.output;
  EXPECT_NE(result.output.find("cert_poll: info: 2 issued"), std::string::npos)
      << "stderr must keep its lines\n"
      << result.output;
  std::string logged = syslog_socket.received();
  EXPECT_NE(logged.find("cert_poll["), std::string::npos) << logged;
  EXPECT_NE(logged.find("2 issued"), std::string::npos) << logged;
  EXPECT_EQ(logged.find(k_password), std::string::npos);
}

TEST_F(ExampleDatabase, UnopenableLogFileIsUsageError) {
  fs::path db = copy_example("acme_srv.db");
  fs::path config = write_config(db);
  std::string before = dump(db);
  fs::path log = m_dir / "no-such-folder" / "cert_poll.log";

  auto result = run_cert_poll("--log-file " + shell_quote(log.string()) +
                              " --config " + shell_quote(config.string()));

  EXPECT_EQ(result.exit_status, 2) << result.output;
  EXPECT_NE(result.output.find("failed to open log file '" + log.string() +
                               "' (No such file or directory)"),
            std::string::npos)
      << result.output;
  EXPECT_FALSE(fs::exists(log.parent_path())) << "a folder was created";
  EXPECT_EQ(dump(db), before);
  EXPECT_TRUE(m_ca->received().empty()) << "the CA was asked";
}

TEST(CommandLine, HelpListsReportOptions) {
  auto result = run_cert_poll("--help");

  EXPECT_EQ(result.exit_status, 0);
  for (const char *option : {"--list",
                             "--json",
                             "--metrics-file PATH",
                             "--log-file PATH",
                             "--syslog"}) {
    EXPECT_NE(result.output.find(option), std::string::npos) << option;
  }
}

TEST(CommandLine, ListExcludesJson) {
  auto result = run_cert_poll("--list --json");

  EXPECT_EQ(result.exit_status, 2) << result.output;
}

// A database on a file system with no space left. As root the test mounts a
// small tmpfs and fills it. Otherwise `ulimit -f` stops the file from
// growing, which SQLite reports as an I/O error instead of a full disk.
class FullDisk : public ExampleDatabase {
protected:
  void TearDown() override {
    if (m_mounted) {
      run_command("umount -l " + shell_quote(m_mount.string()));
    }
  }

  // Returns the command prefix that makes the run meet a full disk.
  std::string fill(const fs::path &db) {
    if (geteuid() != 0) {
      // 512-byte blocks: the database may not grow past its present size.
      auto blocks = fs::file_size(db) / 512;
      return "ulimit -f " + std::to_string(blocks) + "; trap '' XFSZ; ";
    }
    fill_tmpfs();
    return "";
  }

  fs::path prepare() {
    m_mount = m_dir / "small";
    fs::create_directories(m_mount);
    if (geteuid() == 0) {
      auto mounted = run_command("mount -t tmpfs -o size=256k tmpfs " +
                                 shell_quote(m_mount.string()));
      EXPECT_EQ(mounted.exit_status, 0) << "mount needs root";
      m_mounted = mounted.exit_status == 0;
    }
    fs::path db = m_mount / "acme_srv.db";
    fs::copy_file(copy_example("acme_srv.db"), db);
    return db;
  }

  void fill_tmpfs() {
    // dd stops with "No space left on device", which is what is wanted.
    run_command(
        "dd if=/dev/zero of=" + shell_quote((m_mount / "filler").string()) +
        " bs=4k 2>/dev/null");
  }

  void free_space() { fs::remove(m_mount / "filler"); }

  fs::path m_mount;
  bool m_mounted = false;
};

TEST_F(FullDisk, FullDiskGivesExitThreeAndLosesNothing) {
  fs::path db = prepare();
  fs::path config = write_config(db);
  std::string before = dump(db);
  std::string prefix = fill(db);

  auto result =
      run_command("DEMO_CA_PASSWORD=" + std::string(k_password) + " sh -c " +
                  shell_quote(prefix + "exec " + shell_quote(CERT_POLL_BINARY) +
                              " --config " + shell_quote(config.string())) +
                  " 2>&1");

  EXPECT_EQ(result.exit_status, 3) << result.output;
  EXPECT_NE(result.output.find(db.string()), std::string::npos)
      << result.output;
  EXPECT_NE(result.output.find("free space"), std::string::npos)
      << result.output;
  EXPECT_EQ(dump(db), before)
      << "a failed write must leave every row as it was";
  auto integrity = run_command("sqlite3 " + shell_quote(db.string()) +
                               " 'PRAGMA integrity_check'");
  EXPECT_EQ(integrity.output, "ok\n");

  free_space();
  auto next = run_cert_poll("--config " + shell_quote(config.string()));
  EXPECT_EQ(next.exit_status, 0) << next.output;
  EXPECT_EQ(order_states(db)["Ord1Approved"], "valid");
  EXPECT_EQ(order_states(db)["Ord6Valid"], "valid");
}

} // namespace
