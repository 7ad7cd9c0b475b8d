// SPDX-License-Identifier: Apache-2.0
// The cert_poll binary as an administrator runs it: flags, exit statuses,
// messages, and a smoke test on copies of the example databases against the
// in-process demo CA.

#include "cert_poll/run_lock.hpp"
#include "cert_poll/x509.hpp"

#include <algorithm>
#include <filesystem>
#include <optional>
#include <string>
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

} // namespace
