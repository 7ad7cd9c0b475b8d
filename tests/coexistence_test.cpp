// SPDX-License-Identifier: Apache-2.0
// The cert_poll binary next to acme2certifier: another connection writes the
// same SQLite file in short transactions while a pass runs, as
// acme2certifier's wsgi handler does (rollback journal, Python sqlite3's
// 5 s busy timeout), and neither side may lose a write.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <sqlite3.h>

#include "demo_ca.hpp"
#include "support/acme_db.hpp"
#include "support/cert_poll_process.hpp"
#include "support/test_support.hpp"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr const char *k_password = "coexistence-test-password-3b8d";
constexpr int k_order_count = 100;
constexpr milliseconds k_latency{5};
constexpr milliseconds k_writer_pause{5};
constexpr int k_max_writer_transactions = 20000;
constexpr std::chrono::seconds k_max_run_time{120};
// acme2certifier opens the database with Python sqlite3's default timeout.
constexpr int k_acme2certifier_busy_timeout_ms = 5000;

std::string column_text(sqlite3_stmt *statement, int column) {
  const unsigned char *text = sqlite3_column_text(statement, column);
  return text == nullptr ? "" : reinterpret_cast<const char *>(text);
}

sqlite3 *open_database(const fs::path &db) {
  sqlite3 *handle = nullptr;
  if (sqlite3_open_v2(db.c_str(), &handle, SQLITE_OPEN_READWRITE, nullptr) !=
      SQLITE_OK) {
    sqlite3_close(handle);
    throw std::runtime_error("cannot open " + db.string());
  }
  sqlite3_busy_timeout(handle, k_acme2certifier_busy_timeout_ms);
  return handle;
}

// Runs `sql`, which returns one column, and returns its values.
std::vector<std::string> query_column(sqlite3 *handle, const std::string &sql) {
  sqlite3_stmt *statement = nullptr;
  std::vector<std::string> values;
  if (sqlite3_prepare_v2(handle, sql.c_str(), -1, &statement, nullptr) !=
      SQLITE_OK) {
    ADD_FAILURE() << sql << ": " << sqlite3_errmsg(handle);
    return values;
  }
  while (sqlite3_step(statement) == SQLITE_ROW) {
    values.push_back(column_text(statement, 0));
  }
  sqlite3_finalize(statement);
  return values;
}

std::vector<std::string> query_column(const fs::path &db,
                                      const std::string &sql) {
  sqlite3 *handle = open_database(db);
  auto values = query_column(handle, sql);
  sqlite3_close(handle);
  return values;
}

// Writes like acme2certifier: a new order with its certificate row, or an
// update of an account that cert_poll never touches, each in its own short
// transaction, until stop() is called.
class AcmeWriter {
public:
  explicit AcmeWriter(const fs::path &db) : m_db(db) {}

  void start() {
    m_thread = std::thread([this] { write_until_stopped(); });
  }

  void stop() {
    m_stop = true;
    if (m_thread.joinable()) {
      m_thread.join();
    }
  }

  int commits() const { return m_commits; }
  int failures() const { return m_failures; }
  const std::vector<std::string> &order_names() const { return m_orders; }
  const std::string &last_contact() const { return m_last_contact; }
  milliseconds max_transaction_time() const { return m_max_transaction; }
  const std::string &first_error() const { return m_first_error; }

private:
  void write_until_stopped() {
    sqlite3 *handle = open_database(m_db);
    for (int n = 0; !m_stop && n < k_max_writer_transactions; ++n) {
      write_one(handle, n);
      std::this_thread::sleep_for(k_writer_pause);
    }
    sqlite3_close(handle);
  }

  // Runs one transaction: BEGIN, one or two statements, COMMIT. Python's
  // sqlite3 module issues a deferred BEGIN before the first statement.
  void write_one(sqlite3 *handle, int n) {
    bool insert = n % 2 == 0;
    std::string order = "WriterOrd" + std::to_string(n);
    std::string contact =
        "[\"mailto:writer" + std::to_string(n) + "@example.com\"]";
    std::string sql =
        insert ? "INSERT INTO orders (name, identifiers, account_id, "
                 "status_id, expires) VALUES ('" +
                     order +
                     "', '[{\"type\": \"dns\", \"value\": "
                     "\"writer.example.com\"}]', 2, (SELECT id FROM status "
                     "WHERE name = 'ready'), 1900000000); "
                     "INSERT INTO certificate (name, order_id, csr) VALUES "
                     "('WriterCert" +
                     std::to_string(n) + "', last_insert_rowid(), 'MIIB');"
               : "UPDATE account SET contact = '" + contact +
                     "' WHERE name = 'AcctWriter';";

    auto started = Clock::now();
    bool committed =
        run(handle, "BEGIN") && run(handle, sql) && run(handle, "COMMIT");
    auto took =
        std::chrono::duration_cast<milliseconds>(Clock::now() - started);
    m_max_transaction = std::max(m_max_transaction, took);
    if (!committed) {
      sqlite3_exec(handle, "ROLLBACK", nullptr, nullptr, nullptr);
      ++m_failures;
      return;
    }
    ++m_commits;
    if (insert) {
      m_orders.push_back(order);
    } else {
      m_last_contact = contact;
    }
  }

  bool run(sqlite3 *handle, const std::string &sql) {
    if (sqlite3_exec(handle, sql.c_str(), nullptr, nullptr, nullptr) ==
        SQLITE_OK) {
      return true;
    }
    if (m_first_error.empty()) {
      m_first_error = sql + ": " + sqlite3_errmsg(handle);
    }
    return false;
  }

  fs::path m_db;
  std::thread m_thread;
  std::atomic<bool> m_stop{false};
  std::atomic<int> m_commits{0};
  std::atomic<int> m_failures{0};
  // Read only after stop().
  std::vector<std::string> m_orders;
  std::string m_last_contact;
  milliseconds m_max_transaction{0};
  std::string m_first_error;
};

enum class Decision { approve, reject, pending };

Decision decision_of(int i) {
  constexpr Decision decisions[] = {
      Decision::approve, Decision::reject, Decision::pending};
  return decisions[i % 3];
}

std::string expected_status(Decision decision) {
  switch (decision) {
  case Decision::approve:
    return "valid";
  case Decision::reject:
    return "invalid";
  case Decision::pending:
    break;
  }
  return "processing";
}

// Waits for `process` to end, killing it after k_max_run_time.
int wait_bounded(test_support::CertPollProcess &process) {
  auto deadline = Clock::now() + k_max_run_time;
  while (!process.ended() && Clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  if (!process.ended()) {
    ADD_FAILURE() << "cert_poll still running after " << k_max_run_time.count()
                  << " s: killed";
    process.kill_now();
  }
  return process.wait();
}

// Returns the order names of the log lines that end in `message`.
std::set<std::string> reported_orders(const std::string &output,
                                      const std::string &message) {
  std::set<std::string> orders;
  std::regex line("order '([^']+)', certificate '[^']+': " + message);
  for (auto it = std::sregex_iterator(output.begin(), output.end(), line);
       it != std::sregex_iterator();
       ++it) {
    orders.insert((*it)[1].str());
  }
  return orders;
}

// Returns the count before `word` in the summary line ("... 3 failed ..."),
// or -1 when the line is missing.
int summary_count(const std::string &output, const std::string &word) {
  std::smatch match;
  if (!std::regex_search(output, match, std::regex("(\\d+) " + word))) {
    return -1;
  }
  return std::stoi(match[1].str());
}

class Coexistence : public ::testing::Test {
protected:
  void SetUp() override {
    // The in-process demo CA logs every HTTP request at info level, which
    // would fill the test log with thousands of lines.
    spdlog::set_level(spdlog::level::warn);
    demo_ca::Options options;
    options.password = k_password;
    options.latency = k_latency;
    m_ca = std::make_unique<demo_ca::DemoCa>(options);
    m_ca->start();
    m_db = m_dir / "acme_srv.db";
    make_orders();
    m_config = test_support::write_poll_config(
        m_dir.path(), m_db, m_ca->base_url(), m_ca->root_pem());
  }

  void make_orders() {
    test_support::AcmeDatabase database(
        m_db, test_support::SchemaGeneration::current);
    database.execute("INSERT INTO account (name, alg, jwk, contact) VALUES "
                     "('AcctWriter', 'ES256', '{\"kty\": \"EC\", \"n\": 2}', "
                     "'[\"mailto:writer@example.com\"]')");
    database.execute("BEGIN");
    for (int i = 0; i < k_order_count; ++i) {
      auto key = test_support::make_key_and_csr("coexistence" +
                                                std::to_string(i) + ".example");
      demo_ca::Behaviour behaviour =
          decision_of(i) == Decision::approve  ? demo_ca::Behaviour::approve
          : decision_of(i) == Decision::reject ? demo_ca::Behaviour::reject
                                               : demo_ca::Behaviour::pending;
      std::string poll_identifier = m_ca->add_request(
          "coexistence-" + std::to_string(i), key.csr_der, behaviour);
      database.add_order(order_name(i),
                         "CoexCert" + std::to_string(i),
                         "processing",
                         key.csr_base64,
                         poll_identifier);
    }
    database.execute("COMMIT");
  }

  static std::string order_name(int i) { return "CoexOrd" + std::to_string(i); }

  // Returns order name -> status name for the orders of make_orders().
  std::map<std::string, std::string> order_states() const {
    std::map<std::string, std::string> states;
    for (const auto &line :
         query_column(m_db,
                      "SELECT o.name || '=' || s.name || '=' || "
                      "(c.cert IS NOT NULL AND c.cert_raw IS NOT NULL) FROM "
                      "orders o JOIN status s ON s.id = o.status_id JOIN "
                      "certificate c ON c.order_id = o.id WHERE o.name LIKE "
                      "'CoexOrd%'")) {
      auto first = line.find('=');
      auto second = line.find('=', first + 1);
      std::string status = line.substr(first + 1, second - first - 1);
      bool has_cert = line.substr(second + 1) == "1";
      states[line.substr(0, first)] =
          status == "valid" && !has_cert ? "valid without cert" : status;
    }
    return states;
  }

  // Counts the orders whose state differs from the CA's decision.
  int count_wrong_states() const {
    auto states = order_states();
    int wrong = 0;
    for (int i = 0; i < k_order_count; ++i) {
      std::string expected = expected_status(decision_of(i));
      EXPECT_EQ(states[order_name(i)], expected) << order_name(i);
      wrong += states[order_name(i)] == expected ? 0 : 1;
    }
    return wrong;
  }

  int decided_count() const {
    auto states = order_states();
    return static_cast<int>(
        std::count_if(states.begin(), states.end(), [](const auto &entry) {
          return entry.second != "processing";
        }));
  }

  test_support::CertPollProcess start_cert_poll(const std::string &log) {
    return test_support::CertPollProcess(
        {"--config", m_config.string()}, m_dir / log, k_password);
  }

  void TearDown() override { spdlog::set_level(spdlog::level::info); }

  test_support::TempDir m_dir;
  std::unique_ptr<demo_ca::DemoCa> m_ca;
  fs::path m_db;
  fs::path m_config;
};

TEST_F(Coexistence, ConcurrentWriterLosesNothing) {
  AcmeWriter writer(m_db);
  writer.start();
  while (writer.commits() < 3 && writer.failures() == 0) {
    std::this_thread::sleep_for(milliseconds(1));
  }
  int commits_before = writer.commits();
  test_support::CertPollProcess process = start_cert_poll("run.log");
  int exit_status = wait_bounded(process);
  int commits_during = writer.commits() - commits_before;
  writer.stop();
  std::string output = process.output();

  EXPECT_EQ(exit_status, 0) << output;
  EXPECT_EQ(writer.failures(), 0) << writer.first_error();
  EXPECT_GT(commits_during, 0);
  EXPECT_EQ(query_column(m_db, "PRAGMA integrity_check"),
            std::vector<std::string>{"ok"});

  auto stored = query_column(m_db,
                             "SELECT o.name FROM orders o JOIN certificate c "
                             "ON c.order_id = o.id WHERE o.name LIKE "
                             "'WriterOrd%'");
  std::set<std::string> stored_set(stored.begin(), stored.end());
  EXPECT_EQ(stored.size(), writer.order_names().size());
  int missing_writes = 0;
  for (const auto &name : writer.order_names()) {
    missing_writes += stored_set.contains(name) ? 0 : 1;
  }
  EXPECT_EQ(missing_writes, 0);
  EXPECT_EQ(query_column(m_db,
                         "SELECT contact FROM account WHERE name = "
                         "'AcctWriter'"),
            std::vector<std::string>{writer.last_contact()});

  auto states = order_states();
  auto issued =
      reported_orders(output, "certificate issued, order set to valid");
  auto rejected = reported_orders(output, "request rejected, order set to");
  for (const auto &name : issued) {
    EXPECT_EQ(states[name], "valid") << name;
  }
  for (const auto &name : rejected) {
    EXPECT_EQ(states[name], "invalid") << name;
  }
  int wrong_states = count_wrong_states();
  EXPECT_EQ(wrong_states, 0);
  EXPECT_EQ(static_cast<int>(issued.size()), (k_order_count + 2) / 3);
  EXPECT_EQ(static_cast<int>(rejected.size()), (k_order_count + 1) / 3);

  std::cout << "coexistence test: " << writer.commits() << " writer commits ("
            << commits_during << " during the pass), " << writer.failures()
            << " writer failures, " << missing_writes << " lost writer writes, "
            << issued.size() << " issued and " << rejected.size()
            << " rejected by cert_poll, " << wrong_states
            << " lost cert_poll writes; longest writer transaction "
            << writer.max_transaction_time().count() << " ms\n";
}

TEST_F(Coexistence, LongLockFailsThenNextRunCompletes) {
  test_support::CertPollProcess first = start_cert_poll("first.log");
  // Take the write lock once the pass has stored a few orders, and keep it
  // until cert_poll gives up, which is longer than its busy timeout.
  auto deadline = Clock::now() + k_max_run_time;
  while (decided_count() < 5 && !first.ended() && Clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  sqlite3 *holder = open_database(m_db);
  ASSERT_EQ(sqlite3_exec(holder, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr),
            SQLITE_OK);
  int decided_under_lock = decided_count();
  int first_status = wait_bounded(first);
  sqlite3_exec(holder, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(holder);
  std::string first_output = first.output();

  EXPECT_EQ(first_status, 3) << first_output;
  EXPECT_NE(first_output.find("locked by another process"), std::string::npos)
      << first_output;
  EXPECT_GE(decided_under_lock, 5);
  EXPECT_LT(decided_under_lock, k_order_count * 2 / 3);
  EXPECT_GT(summary_count(first_output, "failed"), 0) << first_output;
  EXPECT_EQ(decided_count(), decided_under_lock);

  test_support::CertPollProcess second = start_cert_poll("second.log");
  int second_status = wait_bounded(second);

  EXPECT_EQ(second_status, 0) << second.output();
  int wrong_states = count_wrong_states();
  EXPECT_EQ(wrong_states, 0);
  EXPECT_EQ(query_column(m_db, "PRAGMA integrity_check"),
            std::vector<std::string>{"ok"});

  std::cout << "coexistence lock test: " << decided_under_lock
            << " orders stored before the lock, "
            << summary_count(first_output, "failed")
            << " requests failed under the lock (exit " << first_status << "), "
            << wrong_states << " wrong states after the next run\n";
}

TEST_F(Coexistence, ExclusiveLockAtStartExitsThree) {
  // An EXCLUSIVE lock keeps out readers too, so cert_poll cannot even read
  // the schema or list the requests.
  sqlite3 *holder = open_database(m_db);
  ASSERT_EQ(sqlite3_exec(holder,
                         "BEGIN EXCLUSIVE; UPDATE account SET contact = "
                         "'[]' WHERE name = 'AcctWriter'",
                         nullptr,
                         nullptr,
                         nullptr),
            SQLITE_OK);
  test_support::CertPollProcess first = start_cert_poll("first.log");
  int first_status = wait_bounded(first);
  sqlite3_exec(holder, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(holder);
  std::string first_output = first.output();

  EXPECT_EQ(first_status, 3) << first_output;
  EXPECT_NE(first_output.find("locked"), std::string::npos) << first_output;
  EXPECT_TRUE(m_ca->received().empty()) << "the CA was asked in vain";
  EXPECT_EQ(decided_count(), 0);

  test_support::CertPollProcess second = start_cert_poll("second.log");
  EXPECT_EQ(wait_bounded(second), 0) << second.output();
  EXPECT_EQ(count_wrong_states(), 0);
}

} // namespace
