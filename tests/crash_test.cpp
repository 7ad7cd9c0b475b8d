// SPDX-License-Identifier: Apache-2.0
// Crash safety of the cert_poll binary: runs killed with SIGKILL at varied
// moments of a pass leave a consistent database, and later runs finish the
// work without losing any decision of the CA.

#include <chrono>
#include <filesystem>
#include <iostream>
#include <map>
#include <random>
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

constexpr const char *k_password = "crash-test-password-5e07";
constexpr int k_order_count = 300;
constexpr int k_block_size = 50; // orders per decision block
constexpr int k_min_kills = 50;
constexpr int k_max_runs = 120;
constexpr std::chrono::milliseconds k_latency{3};

enum class Decision { approve, reject, pending };

// The decision of each block of k_block_size consecutive orders.
constexpr Decision k_block_decisions[] = {Decision::approve,
                                          Decision::reject,
                                          Decision::approve,
                                          Decision::pending,
                                          Decision::approve,
                                          Decision::reject};
static_assert(std::size(k_block_decisions) * k_block_size == k_order_count);

struct TestOrder {
  std::string request_id;
  Decision decision = Decision::pending;
  // The run before which the CA makes its decision. Each run releases one
  // order of every block, spread over the whole pending list.
  int release_run = 0;
};

demo_ca::Behaviour to_behaviour(Decision decision) {
  switch (decision) {
  case Decision::approve:
    return demo_ca::Behaviour::approve;
  case Decision::reject:
    return demo_ca::Behaviour::reject;
  case Decision::pending:
    break;
  }
  return demo_ca::Behaviour::pending;
}

// One certificate row with its order's status.
struct StoredRow {
  std::string status;
  bool has_cert = false;
  bool has_cert_raw = false;
  bool has_serial = false;
  std::string error;
};

std::string column_text(sqlite3_stmt *statement, int column) {
  const unsigned char *text = sqlite3_column_text(statement, column);
  return text == nullptr ? "" : reinterpret_cast<const char *>(text);
}

// Opens the database read-write, as the next cert_poll or acme2certifier
// would, so that SQLite rolls back a journal that a killed run left behind.
sqlite3 *open_database(const fs::path &db) {
  sqlite3 *handle = nullptr;
  if (sqlite3_open_v2(db.c_str(), &handle, SQLITE_OPEN_READWRITE, nullptr) !=
      SQLITE_OK) {
    sqlite3_close(handle);
    throw std::runtime_error("cannot open " + db.string());
  }
  sqlite3_busy_timeout(handle, 5000);
  return handle;
}

std::string integrity_check(sqlite3 *handle) {
  sqlite3_stmt *statement = nullptr;
  sqlite3_prepare_v2(handle, "PRAGMA integrity_check", -1, &statement, nullptr);
  std::string result;
  while (sqlite3_step(statement) == SQLITE_ROW) {
    result += (result.empty() ? "" : "\n") + column_text(statement, 0);
  }
  sqlite3_finalize(statement);
  return result;
}

// Returns certificate name -> stored row for every certificate.
std::map<std::string, StoredRow> stored_rows(sqlite3 *handle) {
  sqlite3_stmt *statement = nullptr;
  sqlite3_prepare_v2(handle,
                     "SELECT c.name, s.name, c.cert IS NOT NULL, "
                     "c.cert_raw IS NOT NULL, c.serial IS NOT NULL, c.error "
                     "FROM certificate c JOIN orders o ON o.id = c.order_id "
                     "JOIN status s ON s.id = o.status_id",
                     -1,
                     &statement,
                     nullptr);
  std::map<std::string, StoredRow> rows;
  while (sqlite3_step(statement) == SQLITE_ROW) {
    rows[column_text(statement, 0)] =
        StoredRow{column_text(statement, 1),
                  sqlite3_column_int(statement, 2) == 1,
                  sqlite3_column_int(statement, 3) == 1,
                  sqlite3_column_int(statement, 4) == 1,
                  column_text(statement, 5)};
  }
  sqlite3_finalize(statement);
  return rows;
}

// Checks one row against the CA's decision and returns the number of
// violated rules. `released` is true once the CA has decided.
int check_row(const std::string &name,
              const StoredRow &row,
              Decision decision,
              bool released,
              const std::string &when) {
  int violations = 0;
  auto expect = [&](bool condition, const std::string &rule) {
    EXPECT_TRUE(condition) << when << ": certificate " << name << " ("
                           << row.status << "): " << rule;
    violations += condition ? 0 : 1;
  };
  if (row.status == "valid") {
    expect(row.has_cert, "valid without cert");
    expect(row.has_cert_raw, "valid without cert_raw");
    expect(row.has_serial, "valid without serial");
    expect(released, "valid before the CA decided");
    expect(decision == Decision::approve,
           "valid although the CA does not approve it");
  } else if (row.status == "invalid") {
    expect(released, "invalid before the CA decided");
    expect(decision == Decision::reject,
           "invalid although the CA does not reject it");
    expect(row.error == "request rejected by the CA",
           "invalid without the rejection error");
  } else {
    expect(row.status == "processing", "unexpected status");
    expect(!row.has_cert, "cert stored while the order is processing");
  }
  return violations;
}

// Checks every row after a kill and returns the number of violated rules.
int check_database(const fs::path &db,
                   const std::vector<TestOrder> &orders,
                   int run,
                   const std::string &when) {
  sqlite3 *handle = open_database(db);
  std::string integrity = integrity_check(handle);
  auto rows = stored_rows(handle);
  sqlite3_close(handle);

  int violations = 0;
  EXPECT_EQ(integrity, "ok") << when;
  violations += integrity == "ok" ? 0 : 1;
  EXPECT_EQ(rows.size(), orders.size()) << when;
  for (std::size_t i = 0; i < orders.size(); ++i) {
    std::string name = "CrashCert" + std::to_string(i);
    auto found = rows.find(name);
    if (found == rows.end()) {
      ADD_FAILURE() << when << ": certificate " << name << " missing";
      ++violations;
      continue;
    }
    bool released = orders[i].release_run <= run;
    violations +=
        check_row(name, found->second, orders[i].decision, released, when);
  }
  return violations;
}

// Returns the number of orders whose final state differs from the CA's
// decision: approve -> valid, reject -> invalid, pending -> processing.
int count_lost_writes(const fs::path &db,
                      const std::vector<TestOrder> &orders) {
  sqlite3 *handle = open_database(db);
  auto rows = stored_rows(handle);
  sqlite3_close(handle);
  int lost = 0;
  for (std::size_t i = 0; i < orders.size(); ++i) {
    const StoredRow &row = rows["CrashCert" + std::to_string(i)];
    std::string expected = orders[i].decision == Decision::approve ? "valid"
                           : orders[i].decision == Decision::reject
                               ? "invalid"
                               : "processing";
    lost += row.status == expected ? 0 : 1;
  }
  return lost;
}

// Waits until `file` exists, `process` ends or `limit` passes.
void wait_for_file(const fs::path &file,
                   test_support::CertPollProcess &process,
                   std::chrono::milliseconds limit) {
  auto deadline = Clock::now() + limit;
  while (!fs::exists(file) && !process.ended() && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
}

class CrashSafety : public ::testing::Test {
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

  // Registers every order at the CA as pending and adds it to a database in
  // the current schema, in one transaction.
  void make_orders() {
    test_support::AcmeDatabase database(
        m_db, test_support::SchemaGeneration::current);
    database.execute("BEGIN");
    for (int i = 0; i < k_order_count; ++i) {
      TestOrder order;
      order.request_id = "crash-" + std::to_string(i);
      order.decision = k_block_decisions[i / k_block_size];
      order.release_run = (i * 17) % k_block_size;
      auto key = test_support::make_key_and_csr("crash" + std::to_string(i) +
                                                ".example.com");
      std::string poll_identifier = m_ca->add_request(
          order.request_id, key.csr_der, demo_ca::Behaviour::pending);
      database.add_order("CrashOrd" + std::to_string(i),
                         "CrashCert" + std::to_string(i),
                         "processing",
                         key.csr_base64,
                         poll_identifier);
      m_orders.push_back(order);
    }
    database.execute("COMMIT");
  }

  // Lets the CA decide the orders whose release_run is `run`.
  void release_decisions(int run) {
    for (const auto &order : m_orders) {
      if (order.release_run == run && order.decision != Decision::pending) {
        m_ca->set_behaviour(order.request_id, to_behaviour(order.decision));
      }
    }
  }

  std::vector<std::string> arguments(bool dry_run) const {
    std::vector<std::string> result{"--config", m_config.string()};
    if (dry_run) {
      result.emplace_back("--dry-run");
    }
    return result;
  }

  // Returns the time of one dry-run pass over every order, an estimate of
  // how long a run that writes takes.
  std::chrono::milliseconds measure_pass() {
    auto started = Clock::now();
    test_support::CertPollProcess process(
        arguments(true), m_dir / "dry-run.log", k_password);
    EXPECT_EQ(process.wait(), 0) << process.output();
    return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() -
                                                                 started);
  }

  int processing_count() {
    sqlite3 *handle = open_database(m_db);
    int count = 0;
    for (const auto &[name, row] : stored_rows(handle)) {
      count += row.status == "processing" ? 1 : 0;
    }
    sqlite3_close(handle);
    return count;
  }

  void TearDown() override { spdlog::set_level(spdlog::level::info); }

  test_support::TempDir m_dir;
  std::unique_ptr<demo_ca::DemoCa> m_ca;
  fs::path m_db;
  fs::path m_config;
  std::vector<TestOrder> m_orders;
};

TEST_F(CrashSafety, KilledRunsLoseNoWrite) {
  std::chrono::milliseconds full_pass = measure_pass();
  // A fixed seed repeats the same kill fractions of a pass on every run.
  std::mt19937 random(20261204);
  std::uniform_real_distribution<double> fraction(0.0, 1.0);
  fs::path journal = m_db.string() + "-journal";

  int kills = 0;
  int runs = 0;
  int kills_in_transaction = 0;
  int violations = 0;
  while (kills < k_min_kills && runs < k_max_runs) {
    release_decisions(runs);
    // A pass gets shorter as orders leave processing. The factor 1.2 allows
    // for the writes, which the dry run does not make.
    double share = static_cast<double>(processing_count()) / k_order_count;
    auto delay = std::chrono::milliseconds(
        static_cast<long>(fraction(random) * share * 1.2 *
                          static_cast<double>(full_pass.count())));
    // Every other run is killed as soon as its journal appears, so inside a
    // write transaction, which a random moment rarely hits.
    bool at_journal = runs % 2 == 1;

    test_support::CertPollProcess process(
        arguments(false), m_dir / "run.log", k_password);
    ++runs;
    std::string when = "run " + std::to_string(runs);
    if (at_journal) {
      wait_for_file(journal, process, full_pass * 2);
      when += " at its first journal";
    } else {
      std::this_thread::sleep_for(delay);
      when += " after " + std::to_string(delay.count()) + " ms";
    }
    if (process.kill_now()) {
      ++kills;
      kills_in_transaction += fs::exists(journal) ? 1 : 0;
    } else {
      EXPECT_EQ(process.wait(), 0) << when << ": " << process.output();
    }
    violations += check_database(m_db, m_orders, runs - 1, when);
  }
  for (int run = runs; run < k_block_size; ++run) {
    release_decisions(run);
  }

  test_support::CertPollProcess final_run(
      arguments(false), m_dir / "final.log", k_password);
  ++runs;
  EXPECT_EQ(final_run.wait(), 0) << final_run.output();
  violations += check_database(m_db, m_orders, k_block_size, "final run");
  int lost_writes = count_lost_writes(m_db, m_orders);

  std::cout << "crash test: " << kills << " kills (" << kills_in_transaction
            << " inside a write transaction), " << runs << " runs, "
            << k_order_count << " orders, " << lost_writes << " lost writes, "
            << violations << " violations; full pass " << full_pass.count()
            << " ms\n";
  EXPECT_GE(kills, k_min_kills);
  EXPECT_EQ(lost_writes, 0);
  EXPECT_EQ(violations, 0);
}

} // namespace
