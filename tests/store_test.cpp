// SPDX-License-Identifier: Apache-2.0
#include "cert_poll/store.hpp"

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <string>
#include <sys/types.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include <gtest/gtest.h>
#include <sqlite3.h>

#include "support/test_support.hpp"

namespace {

using cert_poll::ErrorKind;
using cert_poll::IssuedCertificate;
using cert_poll::Outcome;
using cert_poll::Store;
using cert_poll::StoreOptions;
using cert_poll::Update;

std::filesystem::path schema_file(const std::string &name) {
  return std::filesystem::path(CERT_POLL_SOURCE_DIR) / "tests" / "support" /
         name;
}

// A second connection to the test database, for setting it up, changing it
// under the store and reading what the store wrote.
class Connection {
public:
  explicit Connection(const std::filesystem::path &path) {
    int code = sqlite3_open_v2(path.c_str(),
                               &m_db,
                               SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                               nullptr);
    if (code != SQLITE_OK) {
      throw std::runtime_error("opening test database '" + path.string() +
                               "' failed");
    }
  }
  ~Connection() { sqlite3_close(m_db); }
  Connection(const Connection &) = delete;
  Connection &operator=(const Connection &) = delete;

  // Runs `sql`, throwing on failure.
  void execute(const std::string &sql) {
    char *message = nullptr;
    int code = sqlite3_exec(m_db, sql.c_str(), nullptr, nullptr, &message);
    if (code != SQLITE_OK) {
      std::string text = message != nullptr ? message : "unknown error";
      sqlite3_free(message);
      throw std::runtime_error("test SQL failed: " + text + ": " + sql);
    }
  }

  // Returns the first column of the first row of `sql`, or nullopt when
  // there is no row or the value is NULL.
  std::optional<std::string> text(const std::string &sql) {
    sqlite3_stmt *statement = nullptr;
    if (sqlite3_prepare_v2(m_db, sql.c_str(), -1, &statement, nullptr) !=
        SQLITE_OK) {
      throw std::runtime_error("test SQL failed: " + sql);
    }
    std::optional<std::string> result;
    if (sqlite3_step(statement) == SQLITE_ROW &&
        sqlite3_column_type(statement, 0) != SQLITE_NULL) {
      result =
          reinterpret_cast<const char *>(sqlite3_column_text(statement, 0));
    }
    sqlite3_finalize(statement);
    return result;
  }

private:
  sqlite3 *m_db = nullptr;
};

// Orders and certificates shared by most tests. Status ids follow
// acme2certifier's order (1 invalid, 4 processing, 5 valid).
constexpr const char *k_seed_rows = R"sql(
INSERT INTO account (id, name, alg, jwk, contact)
  VALUES (1, 'account1', 'ES256', '{}', '["mailto:admin@example.org"]');
INSERT INTO orders (id, name, identifiers, account_id, status_id, expires)
  VALUES (1, 'order1', '[{"type": "dns", "value": "a.example.org"}]', 1, 4, 0),
         (2, 'order2', '[{"type": "dns", "value": "b.example.org"}]', 1, 4, 0),
         (3, 'order3', '[]', 1, 5, 0),
         (4, 'order4', '[]', 1, 4, 0),
         (5, 'order5', '[]', 1, 4, 0);
INSERT INTO certificate (id, name, order_id, csr, poll_identifier, error)
  VALUES (1, 'cert1', 1, 'csr1', 'https://ca.example.org/v1/requests/1', NULL),
         (2, 'cert2', 2, 'csr2', ' https://ca.example.org/v1/requests/2 ',
          'Unknown request status: pending'),
         (3, 'cert3', 3, 'csr3', 'https://ca.example.org/v1/requests/3', NULL),
         (4, 'cert4', 4, 'csr4', NULL, NULL),
         (5, 'cert5', 5, 'csr5', '  ', NULL);
)sql";

IssuedCertificate sample_certificate() {
  return IssuedCertificate{
      .chain_pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END "
                   "CERTIFICATE-----\n",
      .cert_raw = "AAAA",
      .issue_uts = 1700000000,
      .expire_uts = 1731536000,
      .serial = "0a1b",
      .aki = "c0ffee",
      .renewal_info = "abcd0420ef01",
  };
}

Update issued_update(std::int64_t certificate_id, std::int64_t order_id) {
  return Update{
      .certificate_id = certificate_id,
      .order_id = order_id,
      .outcome = Outcome::issued,
      .error = "stale error",
      .poll_identifier = "stale identifier",
      .certificate = sample_certificate(),
  };
}

// An update without a certificate, as pending, failed and rejected outcomes
// carry.
Update error_update(std::int64_t certificate_id,
                    std::int64_t order_id,
                    Outcome outcome,
                    std::optional<std::string> error,
                    std::optional<std::string> poll_identifier) {
  return Update{
      .certificate_id = certificate_id,
      .order_id = order_id,
      .outcome = outcome,
      .error = std::move(error),
      .poll_identifier = std::move(poll_identifier),
      .certificate = std::nullopt,
  };
}

class StoreTest : public ::testing::Test {
protected:
  // Creates the database from one of the schema files and adds the seed
  // rows.
  void create(const std::string &schema = "acme_schema.sql") {
    Connection connection(m_path);
    connection.execute(test_support::read_file(schema_file(schema)));
    connection.execute(k_seed_rows);
  }

  std::optional<std::string> query(const std::string &sql) {
    Connection connection(m_path);
    return connection.text(sql);
  }

  std::optional<std::string> certificate_column(const std::string &column,
                                                int certificate_id) {
    return query("SELECT " + column + " FROM certificate WHERE id = " +
                 std::to_string(certificate_id));
  }

  std::optional<std::string> order_status_id(int order_id) {
    return query("SELECT status_id FROM orders WHERE id = " +
                 std::to_string(order_id));
  }

  std::optional<std::string> schema_sql() {
    return query("SELECT group_concat(sql, ';') FROM (SELECT sql FROM "
                 "sqlite_master ORDER BY name)");
  }

  cert_poll::Result<Store> open(const StoreOptions &options = {}) {
    return Store::open(m_path, options);
  }

  test_support::TempDir m_dir;
  std::filesystem::path m_path = m_dir / "acme_srv.db";
};

TEST(Outcome, ToString) {
  EXPECT_EQ(cert_poll::to_string(Outcome::issued), "issued");
  EXPECT_EQ(cert_poll::to_string(Outcome::pending), "pending");
  EXPECT_EQ(cert_poll::to_string(Outcome::rejected), "rejected");
  EXPECT_EQ(cert_poll::to_string(Outcome::failed), "failed");
}

// Opening and schema detection

TEST_F(StoreTest, OpenCurrentSchema) {
  create();
  auto store = open();
  ASSERT_TRUE(store) << store.error().message;

  const auto &schema = store->schema();
  EXPECT_EQ(schema.order_table, "orders");
  EXPECT_EQ(schema.certificate_table, "certificate");
  EXPECT_EQ(schema.status_table, "status");
  EXPECT_EQ(schema.processing_id, 4);
  EXPECT_EQ(schema.valid_id, 5);
  EXPECT_EQ(schema.invalid_id, 1);
  EXPECT_TRUE(schema.has_certificate_column("serial"));
  EXPECT_TRUE(schema.order_columns.contains("profile"));
  EXPECT_TRUE(store->missing_columns().empty());
}

TEST_F(StoreTest, Open2020Schema) {
  create("acme_schema_2020.sql");
  auto store = open();
  ASSERT_TRUE(store) << store.error().message;

  EXPECT_EQ(store->schema().processing_id, 4);
  EXPECT_FALSE(store->schema().order_columns.contains("profile"));
  std::vector<std::string> expected{
      "renewal_info", "aki", "serial", "issue_uts", "expire_uts"};
  EXPECT_EQ(store->missing_columns(), expected);
}

TEST_F(StoreTest, StatusIdsByName) {
  create();
  Connection connection(m_path);
  connection.execute("DELETE FROM status;"
                     "INSERT INTO status (id, name) VALUES (2, 'valid'), "
                     "(7, 'processing'), (9, 'invalid');"
                     "UPDATE orders SET status_id = 7 WHERE id = 1;");

  auto store = open();
  ASSERT_TRUE(store) << store.error().message;
  EXPECT_EQ(store->schema().processing_id, 7);
  EXPECT_EQ(store->schema().valid_id, 2);
  EXPECT_EQ(store->schema().invalid_id, 9);

  auto list = store->pending();
  ASSERT_TRUE(list) << list.error().message;
  ASSERT_EQ(list->requests.size(), 1U);
  EXPECT_EQ(list->requests[0].order_name, "order1");

  auto recorded = store->record(issued_update(1, 1));
  ASSERT_TRUE(recorded) << recorded.error().message;
  EXPECT_EQ(order_status_id(1), "2");
}

TEST_F(StoreTest, StatusMissing) {
  create();
  Connection connection(m_path);
  connection.execute("DELETE FROM status WHERE name = 'invalid'");

  auto store = open();
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().kind, ErrorKind::database);
  EXPECT_EQ(store.error().message,
            "database '" + m_path.string() +
                "': table 'status' has no status 'invalid': check that the "
                "file is an acme2certifier database");
}

// Minimal django tables: only the columns the store requires, so pending()
// must also cope without orders.identifiers and certificate.created_at.
std::string django_schema(const std::string &prefix) {
  return "CREATE TABLE " + prefix +
         "_status (id integer PRIMARY KEY, name varchar(15));"
         "INSERT INTO " +
         prefix +
         "_status (id, name) VALUES (1, 'invalid'), (4, 'processing'), "
         "(5, 'valid');"
         "CREATE TABLE " +
         prefix +
         "_order (id integer PRIMARY KEY, name varchar(15), status_id "
         "integer);"
         "CREATE TABLE " +
         prefix +
         "_certificate (id integer PRIMARY KEY, name varchar(15), cert text, "
         "cert_raw text, error text, order_id integer, csr text, "
         "poll_identifier text);"
         "INSERT INTO " +
         prefix +
         "_order (id, name, status_id) VALUES (1, 'order1', 4);"
         "INSERT INTO " +
         prefix +
         "_certificate (id, name, order_id, csr, poll_identifier) VALUES "
         "(1, 'cert1', 1, 'csr1', 'https://ca.example.org/v1/requests/1');";
}

TEST_F(StoreTest, DjangoTables) {
  Connection(m_path).execute(django_schema("acme_srv"));

  auto store = open();
  ASSERT_TRUE(store) << store.error().message;
  EXPECT_EQ(store->schema().order_table, "acme_srv_order");
  EXPECT_EQ(store->schema().certificate_table, "acme_srv_certificate");
  EXPECT_EQ(store->schema().status_table, "acme_srv_status");

  auto list = store->pending();
  ASSERT_TRUE(list) << list.error().message;
  ASSERT_EQ(list->requests.size(), 1U);
  EXPECT_EQ(list->requests[0].certificate_name, "cert1");
  EXPECT_EQ(list->requests[0].identifiers, "");
  EXPECT_EQ(list->requests[0].created_at, "");

  auto recorded = store->record(issued_update(1, 1));
  ASSERT_TRUE(recorded) << recorded.error().message;
  EXPECT_EQ(query("SELECT status_id FROM acme_srv_order WHERE id = 1"), "5");
  EXPECT_EQ(query("SELECT cert_raw FROM acme_srv_certificate WHERE id = 1"),
            "AAAA");
}

TEST_F(StoreTest, OlderDjangoTables) {
  Connection(m_path).execute(django_schema("acme"));

  auto store = open();
  ASSERT_TRUE(store) << store.error().message;
  EXPECT_EQ(store->schema().order_table, "acme_order");
  EXPECT_EQ(store->schema().certificate_table, "acme_certificate");
  EXPECT_EQ(store->schema().status_table, "acme_status");
}

TEST_F(StoreTest, OpenMissingFile) {
  auto store = open();
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().kind, ErrorKind::database);
  EXPECT_EQ(store.error().message,
            "database '" + m_path.string() +
                "' not found: check [DBhandler] dbfile or pass --db");
  EXPECT_FALSE(std::filesystem::exists(m_path));
}

TEST_F(StoreTest, OpenFolder) {
  std::filesystem::create_directory(m_path);
  auto store = open();
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().kind, ErrorKind::database);
  EXPECT_NE(store.error().message.find("is a folder"), std::string::npos);
}

TEST_F(StoreTest, OpenNotSqlite) {
  test_support::write_file(m_path,
                           "[DBhandler]\ndbfile: /var/lib/acme_srv.db\n"
                           "this is a configuration file, not a database\n");
  auto store = open();
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().kind, ErrorKind::database);
  EXPECT_EQ(store.error().message,
            "database '" + m_path.string() +
                "' is not a SQLite database (file is not a database): check "
                "[DBhandler] dbfile or pass --db");
}

TEST_F(StoreTest, OpenWithoutTables) {
  Connection(m_path).execute("CREATE TABLE unrelated (id integer)");
  auto store = open();
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().kind, ErrorKind::database);
  EXPECT_NE(store.error().message.find(m_path.string()), std::string::npos);
  EXPECT_NE(store.error().message.find("is not an acme2certifier database"),
            std::string::npos);
  EXPECT_NE(store.error().message.find("'orders/certificate/status'"),
            std::string::npos);
}

TEST_F(StoreTest, OpenEmptyFile) {
  test_support::write_file(m_path, "");
  auto store = open();
  ASSERT_FALSE(store);
  EXPECT_NE(store.error().message.find("is not an acme2certifier database"),
            std::string::npos);
}

TEST_F(StoreTest, OpenMissingColumn) {
  Connection(m_path).execute(
      "CREATE TABLE status (id integer PRIMARY KEY, name text);"
      "CREATE TABLE orders (id integer PRIMARY KEY, name text, status_id "
      "integer);"
      "CREATE TABLE certificate (id integer PRIMARY KEY, name text, cert "
      "text, cert_raw text, error text, order_id integer, csr text);");
  auto store = open();
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().kind, ErrorKind::database);
  EXPECT_EQ(store.error().message,
            "database '" + m_path.string() +
                "': table 'certificate' has no column 'poll_identifier': "
                "update the database with acme2certifier's own tools");
}

TEST_F(StoreTest, JournalModeUnchanged) {
  create();
  auto before = query("PRAGMA journal_mode");
  {
    auto store = open();
    ASSERT_TRUE(store) << store.error().message;
    auto recorded = store->record(issued_update(1, 1));
    ASSERT_TRUE(recorded) << recorded.error().message;
  }
  EXPECT_EQ(before, "delete");
  EXPECT_EQ(query("PRAGMA journal_mode"), before);
  EXPECT_FALSE(std::filesystem::exists(m_path.string() + "-wal"));
  EXPECT_FALSE(std::filesystem::exists(m_path.string() + "-journal"));
}

TEST_F(StoreTest, WalModeUnchanged) {
  create();
  EXPECT_EQ(query("PRAGMA journal_mode = WAL"), "wal");
  {
    auto store = open();
    ASSERT_TRUE(store) << store.error().message;
    auto recorded = store->record(issued_update(1, 1));
    ASSERT_TRUE(recorded) << recorded.error().message;
  }
  EXPECT_EQ(query("PRAGMA journal_mode"), "wal");
}

// pending()

TEST_F(StoreTest, PendingProcessingOnly) {
  create();
  auto store = open();
  ASSERT_TRUE(store) << store.error().message;
  auto list = store->pending();
  ASSERT_TRUE(list) << list.error().message;

  ASSERT_EQ(list->requests.size(), 2U);
  const auto &first = list->requests[0];
  EXPECT_EQ(first.certificate_id, 1);
  EXPECT_EQ(first.certificate_name, "cert1");
  EXPECT_EQ(first.order_id, 1);
  EXPECT_EQ(first.order_name, "order1");
  EXPECT_EQ(first.csr, "csr1");
  EXPECT_EQ(first.poll_identifier, "https://ca.example.org/v1/requests/1");
  EXPECT_EQ(first.error, "");
  EXPECT_EQ(first.identifiers,
            R"([{"type": "dns", "value": "a.example.org"}])");
  EXPECT_FALSE(first.created_at.empty());
  EXPECT_EQ(list->requests[1].certificate_name, "cert2");
  EXPECT_EQ(list->requests[1].error, "Unknown request status: pending");
}

TEST_F(StoreTest, PendingTrimsIdentifier) {
  create();
  auto store = open();
  ASSERT_TRUE(store) << store.error().message;
  auto list = store->pending("order2");
  ASSERT_TRUE(list) << list.error().message;
  ASSERT_EQ(list->requests.size(), 1U);
  EXPECT_EQ(list->requests[0].poll_identifier,
            "https://ca.example.org/v1/requests/2");
}

TEST_F(StoreTest, PendingSkipsNoIdentifier) {
  create();
  auto store = open();
  ASSERT_TRUE(store) << store.error().message;
  auto list = store->pending();
  ASSERT_TRUE(list) << list.error().message;
  std::vector<std::string> expected{"cert4", "cert5"};
  EXPECT_EQ(list->skipped, expected);
}

TEST_F(StoreTest, PendingOrderFilter) {
  create();
  auto store = open();
  ASSERT_TRUE(store) << store.error().message;

  auto second = store->pending("order2");
  ASSERT_TRUE(second) << second.error().message;
  ASSERT_EQ(second->requests.size(), 1U);
  EXPECT_EQ(second->requests[0].certificate_name, "cert2");
  EXPECT_TRUE(second->skipped.empty());

  auto valid = store->pending("order3");
  ASSERT_TRUE(valid) << valid.error().message;
  EXPECT_TRUE(valid->requests.empty());

  auto unknown = store->pending("no-such-order");
  ASSERT_TRUE(unknown) << unknown.error().message;
  EXPECT_TRUE(unknown->requests.empty());
}

TEST_F(StoreTest, Pending2020Schema) {
  create("acme_schema_2020.sql");
  auto store = open();
  ASSERT_TRUE(store) << store.error().message;
  auto list = store->pending();
  ASSERT_TRUE(list) << list.error().message;
  ASSERT_EQ(list->requests.size(), 2U);
  EXPECT_EQ(list->requests[0].certificate_name, "cert1");
}

TEST_F(StoreTest, PendingOrderedByCertificateId) {
  create();
  Connection(m_path).execute(
      "INSERT INTO orders (id, name, identifiers, account_id, status_id, "
      "expires) VALUES (6, 'order6', '[]', 1, 4, 0);"
      "INSERT INTO certificate (id, name, order_id, csr, poll_identifier) "
      "VALUES (0, 'cert0', 6, 'csr0', 'https://ca.example.org/v1/"
      "requests/0');");
  auto store = open();
  ASSERT_TRUE(store) << store.error().message;
  auto list = store->pending();
  ASSERT_TRUE(list) << list.error().message;
  ASSERT_EQ(list->requests.size(), 3U);
  EXPECT_EQ(list->requests[0].certificate_name, "cert0");
  EXPECT_EQ(list->requests[1].certificate_name, "cert1");
  EXPECT_EQ(list->requests[2].certificate_name, "cert2");
}

// order_status()

TEST_F(StoreTest, OrderStatus) {
  create();
  auto store = open();
  ASSERT_TRUE(store) << store.error().message;

  auto processing = store->order_status("order1");
  ASSERT_TRUE(processing) << processing.error().message;
  EXPECT_EQ(*processing, "processing");

  auto valid = store->order_status("order3");
  ASSERT_TRUE(valid) << valid.error().message;
  EXPECT_EQ(*valid, "valid");

  auto unknown = store->order_status("no-such-order");
  ASSERT_TRUE(unknown) << unknown.error().message;
  EXPECT_FALSE(unknown->has_value());
}

// record()

TEST_F(StoreTest, RecordIssued) {
  create();
  auto store = open();
  ASSERT_TRUE(store) << store.error().message;
  auto recorded = store->record(issued_update(1, 1));
  ASSERT_TRUE(recorded) << recorded.error().message;

  EXPECT_EQ(certificate_column("cert", 1), sample_certificate().chain_pem);
  EXPECT_EQ(certificate_column("cert_raw", 1), "AAAA");
  EXPECT_EQ(certificate_column("error", 1), std::nullopt);
  EXPECT_EQ(certificate_column("poll_identifier", 1), std::nullopt);
  EXPECT_EQ(certificate_column("issue_uts", 1), "1700000000");
  EXPECT_EQ(certificate_column("expire_uts", 1), "1731536000");
  EXPECT_EQ(certificate_column("typeof(issue_uts)", 1), "integer");
  EXPECT_EQ(certificate_column("serial", 1), "0a1b");
  EXPECT_EQ(certificate_column("aki", 1), "c0ffee");
  EXPECT_EQ(certificate_column("renewal_info", 1), "abcd0420ef01");
  EXPECT_EQ(order_status_id(1), "5");
}

TEST_F(StoreTest, RecordIssuedLeavesOthers) {
  create();
  auto store = open();
  ASSERT_TRUE(store) << store.error().message;
  auto recorded = store->record(issued_update(1, 1));
  ASSERT_TRUE(recorded) << recorded.error().message;

  EXPECT_EQ(certificate_column("cert_raw", 2), std::nullopt);
  EXPECT_EQ(certificate_column("poll_identifier", 2),
            " https://ca.example.org/v1/requests/2 ");
  EXPECT_EQ(order_status_id(2), "4");
  EXPECT_EQ(certificate_column("csr", 1), "csr1");
  EXPECT_EQ(certificate_column("name", 1), "cert1");
}

TEST_F(StoreTest, RecordIssued2020Schema) {
  create("acme_schema_2020.sql");
  auto schema_before = schema_sql();
  auto store = open();
  ASSERT_TRUE(store) << store.error().message;
  auto recorded = store->record(issued_update(1, 1));
  ASSERT_TRUE(recorded) << recorded.error().message;

  EXPECT_EQ(certificate_column("cert", 1), sample_certificate().chain_pem);
  EXPECT_EQ(certificate_column("cert_raw", 1), "AAAA");
  EXPECT_EQ(certificate_column("error", 1), std::nullopt);
  EXPECT_EQ(certificate_column("poll_identifier", 1), std::nullopt);
  EXPECT_EQ(order_status_id(1), "5");
  EXPECT_TRUE(schema_before.has_value());
  EXPECT_EQ(schema_sql(), schema_before);
}

TEST_F(StoreTest, RecordSchemaUnchanged) {
  create();
  auto schema_before = schema_sql();
  auto store = open();
  ASSERT_TRUE(store) << store.error().message;
  auto recorded = store->record(issued_update(1, 1));
  ASSERT_TRUE(recorded) << recorded.error().message;
  EXPECT_EQ(schema_sql(), schema_before);
}

TEST_F(StoreTest, RecordIssuedEmptyAkiNull) {
  create();
  auto store = open();
  ASSERT_TRUE(store) << store.error().message;
  Update update = issued_update(1, 1);
  update.certificate->aki.clear();
  update.certificate->renewal_info.clear();
  auto recorded = store->record(update);
  ASSERT_TRUE(recorded) << recorded.error().message;

  EXPECT_EQ(certificate_column("aki", 1), std::nullopt);
  EXPECT_EQ(certificate_column("renewal_info", 1), std::nullopt);
  EXPECT_EQ(certificate_column("serial", 1), "0a1b");
}

TEST_F(StoreTest, RecordIssuedWithoutCertificate) {
  create();
  auto store = open();
  ASSERT_TRUE(store) << store.error().message;
  Update update = issued_update(1, 1);
  update.certificate.reset();
  auto recorded = store->record(update);
  ASSERT_FALSE(recorded);
  EXPECT_EQ(recorded.error().kind, ErrorKind::check);
  EXPECT_EQ(order_status_id(1), "4");
}

TEST_F(StoreTest, RecordRejected) {
  create();
  auto store = open();
  ASSERT_TRUE(store) << store.error().message;
  Update update = error_update(1,
                               1,
                               Outcome::rejected,
                               "request rejected by the CA operator",
                               "https://ca.example.org/v1/requests/1");
  auto recorded = store->record(update);
  ASSERT_TRUE(recorded) << recorded.error().message;

  EXPECT_EQ(certificate_column("error", 1),
            "request rejected by the CA operator");
  EXPECT_EQ(certificate_column("poll_identifier", 1),
            "https://ca.example.org/v1/requests/1");
  EXPECT_EQ(certificate_column("cert", 1), std::nullopt);
  EXPECT_EQ(order_status_id(1), "1");
}

TEST_F(StoreTest, RecordPendingKeepsStatus) {
  create();
  auto store = open();
  ASSERT_TRUE(store) << store.error().message;
  Update update = error_update(2,
                               2,
                               Outcome::pending,
                               std::nullopt,
                               "https://ca.example.org/v1/requests/22");
  auto recorded = store->record(update);
  ASSERT_TRUE(recorded) << recorded.error().message;

  EXPECT_EQ(certificate_column("error", 2), std::nullopt);
  EXPECT_EQ(certificate_column("poll_identifier", 2),
            "https://ca.example.org/v1/requests/22");
  EXPECT_EQ(order_status_id(2), "4");
}

TEST_F(StoreTest, RecordFailedKeepsStatus) {
  create();
  auto store = open();
  ASSERT_TRUE(store) << store.error().message;
  Update update =
      error_update(1,
                   1,
                   Outcome::failed,
                   "GET 'https://ca.example.org/v1/requests/1' timed out",
                   "https://ca.example.org/v1/requests/1");
  auto recorded = store->record(update);
  ASSERT_TRUE(recorded) << recorded.error().message;

  EXPECT_EQ(certificate_column("error", 1),
            "GET 'https://ca.example.org/v1/requests/1' timed out");
  EXPECT_EQ(certificate_column("poll_identifier", 1),
            "https://ca.example.org/v1/requests/1");
  EXPECT_EQ(order_status_id(1), "4");
}

TEST_F(StoreTest, RecordNullIdentifier) {
  create();
  auto store = open();
  ASSERT_TRUE(store) << store.error().message;
  Update update =
      error_update(1, 1, Outcome::failed, "bad response", std::nullopt);
  auto recorded = store->record(update);
  ASSERT_TRUE(recorded) << recorded.error().message;
  EXPECT_EQ(certificate_column("poll_identifier", 1), std::nullopt);
}

TEST_F(StoreTest, RecordConflict) {
  create();
  auto store = open();
  ASSERT_TRUE(store) << store.error().message;
  Connection(m_path).execute("UPDATE orders SET status_id = 5 WHERE id = 1");

  auto recorded = store->record(issued_update(1, 1));
  ASSERT_FALSE(recorded);
  EXPECT_EQ(recorded.error().kind, ErrorKind::conflict);
  EXPECT_EQ(recorded.error().message,
            "order 'order1' is no longer processing (now 'valid'): nothing "
            "written");
  EXPECT_EQ(certificate_column("cert_raw", 1), std::nullopt);
  EXPECT_EQ(certificate_column("poll_identifier", 1),
            "https://ca.example.org/v1/requests/1");
  EXPECT_EQ(order_status_id(1), "5");
}

TEST_F(StoreTest, RecordConflictFailed) {
  create();
  auto store = open();
  ASSERT_TRUE(store) << store.error().message;
  Connection(m_path).execute("UPDATE orders SET status_id = 1 WHERE id = 1");

  Update update = error_update(1,
                               1,
                               Outcome::failed,
                               "bad response",
                               "https://ca.example.org/v1/requests/1");
  auto recorded = store->record(update);
  ASSERT_FALSE(recorded);
  EXPECT_EQ(recorded.error().kind, ErrorKind::conflict);
  EXPECT_EQ(certificate_column("error", 1), std::nullopt);
}

TEST_F(StoreTest, RecordWrongOrder) {
  create();
  auto store = open();
  ASSERT_TRUE(store) << store.error().message;

  // Certificate 2 belongs to order 2, not order 1.
  auto recorded = store->record(issued_update(2, 1));
  ASSERT_FALSE(recorded);
  EXPECT_EQ(recorded.error().kind, ErrorKind::conflict);
  EXPECT_EQ(recorded.error().message,
            "certificate id '2' of order 'order1' not found: nothing written");
  EXPECT_EQ(certificate_column("cert_raw", 2), std::nullopt);
  EXPECT_EQ(order_status_id(1), "4");
}

TEST_F(StoreTest, RecordMissingOrder) {
  create();
  auto store = open();
  ASSERT_TRUE(store) << store.error().message;
  auto recorded = store->record(issued_update(1, 99));
  ASSERT_FALSE(recorded);
  EXPECT_EQ(recorded.error().kind, ErrorKind::conflict);
  EXPECT_EQ(certificate_column("cert_raw", 1), std::nullopt);
}

TEST_F(StoreTest, RecordLocked) {
  create();
  auto store = open({.busy_timeout = std::chrono::milliseconds(200)});
  ASSERT_TRUE(store) << store.error().message;

  Connection other(m_path);
  other.execute("BEGIN EXCLUSIVE");
  auto recorded = store->record(issued_update(1, 1));
  ASSERT_FALSE(recorded);
  EXPECT_EQ(recorded.error().kind, ErrorKind::busy);
  std::string prefix = "database '" + m_path.string() +
                       "' is locked by another process: gave up after 2 "
                       "attempts and ";
  EXPECT_EQ(recorded.error().message.substr(0, prefix.size()), prefix);
  EXPECT_NE(recorded.error().message.find(
                " ms of waiting in total, so nothing was written and the "
                "requests will be polled again next run"),
            std::string::npos);
  other.execute("COMMIT");

  EXPECT_EQ(certificate_column("cert_raw", 1), std::nullopt);
  EXPECT_EQ(order_status_id(1), "4");

  auto retried = store->record(issued_update(1, 1));
  ASSERT_TRUE(retried) << retried.error().message;
  EXPECT_EQ(certificate_column("cert_raw", 1), "AAAA");
  EXPECT_EQ(order_status_id(1), "5");
}

TEST_F(StoreTest, PendingLocked) {
  create();
  auto store = open({.busy_timeout = std::chrono::milliseconds(200)});
  ASSERT_TRUE(store) << store.error().message;

  Connection other(m_path);
  other.execute("BEGIN EXCLUSIVE");
  auto list = store->pending();
  ASSERT_FALSE(list);
  EXPECT_EQ(list.error().kind, ErrorKind::busy);
  EXPECT_EQ(list.error().message,
            "database '" + m_path.string() +
                "' is locked by another process: listing pending requests "
                "failed (database is locked): try again later");
  other.execute("COMMIT");

  auto retried = store->pending();
  ASSERT_TRUE(retried) << retried.error().message;
  EXPECT_EQ(retried->requests.size(), 2U);
}

TEST_F(StoreTest, OrderStatusLocked) {
  create();
  auto store = open({.busy_timeout = std::chrono::milliseconds(200)});
  ASSERT_TRUE(store) << store.error().message;

  Connection other(m_path);
  other.execute("BEGIN EXCLUSIVE");
  auto status = store->order_status("order1");
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().kind, ErrorKind::busy);
  EXPECT_EQ(status.error().message,
            "database '" + m_path.string() +
                "' is locked by another process: reading the status of order "
                "'order1' failed (database is locked): try again later");
  other.execute("COMMIT");

  auto retried = store->order_status("order1");
  ASSERT_TRUE(retried) << retried.error().message;
  EXPECT_EQ(*retried, "processing");
}

TEST_F(StoreTest, RecordReadOnlyStore) {
  create();
  auto store = open({.read_only = true});
  ASSERT_TRUE(store) << store.error().message;

  auto list = store->pending();
  ASSERT_TRUE(list) << list.error().message;
  EXPECT_EQ(list->requests.size(), 2U);

  auto recorded = store->record(issued_update(1, 1));
  ASSERT_FALSE(recorded);
  EXPECT_EQ(recorded.error().kind, ErrorKind::database);
  EXPECT_EQ(recorded.error().message,
            "database '" + m_path.string() +
                "' was opened read-only: nothing written");
  EXPECT_EQ(certificate_column("cert_raw", 1), std::nullopt);
}

// Runs the rest of a test as the user nobody when the test runs as root,
// because root ignores file permissions. Hands `paths` to nobody first.
class UnprivilegedScope {
public:
  explicit UnprivilegedScope(const std::vector<std::filesystem::path> &paths) {
    if (geteuid() != 0) {
      return;
    }
    for (const auto &path : paths) {
      if (chown(path.c_str(), k_nobody, k_nobody) != 0) {
        throw std::runtime_error("chown failed for " + path.string());
      }
    }
    if (seteuid(k_nobody) != 0) {
      throw std::runtime_error("seteuid(nobody) failed");
    }
    m_dropped = true;
  }
  ~UnprivilegedScope() {
    if (m_dropped && seteuid(0) != 0) {
      std::abort();
    }
  }
  UnprivilegedScope(const UnprivilegedScope &) = delete;
  UnprivilegedScope &operator=(const UnprivilegedScope &) = delete;

private:
  static constexpr uid_t k_nobody = 65534;
  bool m_dropped = false;
};

TEST_F(StoreTest, OpenReadOnlyFile) {
  create();
  std::filesystem::permissions(m_path, std::filesystem::perms::owner_read);
  UnprivilegedScope unprivileged({m_dir.path(), m_path});

  auto store = open();
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().kind, ErrorKind::database);
  EXPECT_EQ(store.error().message,
            "database '" + m_path.string() +
                "' is not writable by this user: check the permissions of "
                "the file (cert_poll must run as the user acme2certifier "
                "runs as)");
}

TEST_F(StoreTest, OpenReadOnlyFileDryRun) {
  create();
  std::filesystem::permissions(m_path, std::filesystem::perms::owner_read);
  UnprivilegedScope unprivileged({m_dir.path(), m_path});

  auto store = open({.read_only = true});
  ASSERT_TRUE(store) << store.error().message;
  auto list = store->pending();
  ASSERT_TRUE(list) << list.error().message;
  EXPECT_EQ(list->requests.size(), 2U);

  // record() still rejects the write and names the cause.
  auto recorded = store->record(issued_update(1, 1));
  ASSERT_FALSE(recorded);
  EXPECT_EQ(recorded.error().kind, ErrorKind::database);
  EXPECT_EQ(recorded.error().message,
            "database '" + m_path.string() +
                "' is not writable, so nothing was written: check the "
                "permissions of the file and its folder");
}

// Opens the test database as the user nobody while its folder is read-only, and
// restores the folder before returning so that the test can clean up.
class ReadOnlyFolderTest : public StoreTest {
protected:
  cert_poll::Result<Store>
  open_in_read_only_folder(const StoreOptions &options) {
    create();
    std::filesystem::permissions(m_dir.path(),
                                 std::filesystem::perms::owner_read |
                                     std::filesystem::perms::owner_exec);
    std::optional<cert_poll::Result<Store>> store;
    {
      UnprivilegedScope unprivileged({m_dir.path(), m_path});
      store.emplace(open(options));
    }
    std::filesystem::permissions(m_dir.path(),
                                 std::filesystem::perms::owner_all);
    return std::move(*store);
  }
};

TEST_F(ReadOnlyFolderTest, OpenFails) {
  auto store = open_in_read_only_folder({});
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().kind, ErrorKind::database);
  EXPECT_EQ(store.error().message,
            "folder '" + m_dir.path().string() + "' of database '" +
                m_path.string() +
                "' is not writable by this user: SQLite creates its journal "
                "there, so check the permissions of the folder");
}

TEST_F(ReadOnlyFolderTest, DryRunOpens) {
  auto store = open_in_read_only_folder({.read_only = true});
  ASSERT_TRUE(store) << store.error().message;
}

// Paged listing

TEST_F(StoreTest, PendingPageSplitsList) {
  create();
  auto store = open();
  ASSERT_TRUE(store) << store.error().message;

  // Processing certificates are 1, 2, 4 and 5; 4 and 5 have no poll
  // identifier, and 3 belongs to a valid order.
  auto first = store->pending_page(std::nullopt, 2);
  ASSERT_TRUE(first) << first.error().message;
  ASSERT_EQ(first->requests.size(), 2U);
  EXPECT_EQ(first->requests[0].certificate_id, 1);
  EXPECT_EQ(first->requests[1].certificate_id, 2);
  EXPECT_TRUE(first->skipped.empty());
  EXPECT_EQ(first->last_certificate_id, 2);
  EXPECT_FALSE(first->last_page);

  auto second = store->pending_page(first->last_certificate_id, 2);
  ASSERT_TRUE(second) << second.error().message;
  EXPECT_TRUE(second->requests.empty());
  EXPECT_EQ(second->skipped, (std::vector<std::string>{"cert4", "cert5"}));
  EXPECT_EQ(second->last_certificate_id, 5);
  EXPECT_FALSE(second->last_page);

  auto third = store->pending_page(second->last_certificate_id, 2);
  ASSERT_TRUE(third) << third.error().message;
  EXPECT_TRUE(third->requests.empty());
  EXPECT_TRUE(third->skipped.empty());
  EXPECT_EQ(third->last_certificate_id, std::nullopt);
  EXPECT_TRUE(third->last_page);
}

// SQLite accepts ids of 0 and below even with AUTOINCREMENT, for example in
// an imported database, and a page that ends on id 0 must not start the
// list again.
TEST_F(StoreTest, PendingPageZeroAndNegativeIds) {
  create();
  Connection(m_path).execute("UPDATE certificate SET id = id - 2");
  auto store = open();
  ASSERT_TRUE(store) << store.error().message;

  // Processing certificates are now -1, 0, 2 and 3; 2 and 3 have no poll
  // identifier.
  auto first = store->pending_page(std::nullopt, 2);
  ASSERT_TRUE(first) << first.error().message;
  ASSERT_EQ(first->requests.size(), 2U);
  EXPECT_EQ(first->requests[0].certificate_id, -1);
  EXPECT_EQ(first->requests[1].certificate_id, 0);
  EXPECT_EQ(first->last_certificate_id, 0);
  EXPECT_FALSE(first->last_page);

  auto second = store->pending_page(first->last_certificate_id, 2);
  ASSERT_TRUE(second) << second.error().message;
  EXPECT_TRUE(second->requests.empty());
  EXPECT_EQ(second->skipped, (std::vector<std::string>{"cert4", "cert5"}));
  EXPECT_EQ(second->last_certificate_id, 3);
}

TEST_F(StoreTest, PendingPageMatchesPending) {
  create();
  auto store = open();
  ASSERT_TRUE(store) << store.error().message;
  auto whole = store->pending();
  ASSERT_TRUE(whole) << whole.error().message;
  auto page = store->pending_page(std::nullopt, 100);
  ASSERT_TRUE(page) << page.error().message;

  EXPECT_TRUE(page->last_page);
  ASSERT_EQ(page->requests.size(), whole->requests.size());
  for (std::size_t i = 0; i < page->requests.size(); ++i) {
    EXPECT_EQ(page->requests[i].certificate_id,
              whole->requests[i].certificate_id);
    EXPECT_EQ(page->requests[i].poll_identifier,
              whole->requests[i].poll_identifier);
    EXPECT_EQ(page->requests[i].error, whole->requests[i].error);
    EXPECT_EQ(page->requests[i].csr, whole->requests[i].csr);
  }
  EXPECT_EQ(page->skipped, whole->skipped);
}

TEST_F(StoreTest, CountProcessing) {
  create();
  auto store = open();
  ASSERT_TRUE(store) << store.error().message;
  auto count = store->count_processing();
  ASSERT_TRUE(count) << count.error().message;
  EXPECT_EQ(*count, 4U);
}

// Grouped writes

class BatchTest : public StoreTest {
protected:
  // Adds `count` processing orders with one certificate each, with ids
  // from 101 on.
  void add_orders(int count) {
    Connection connection(m_path);
    for (int i = 0; i < count; ++i) {
      const std::string id = std::to_string(101 + i);
      connection.execute("INSERT INTO orders (id, name, identifiers, "
                         "account_id, status_id, expires) VALUES (" +
                         id + ", 'batch" + id + "', '[]', 1, 4, 0)");
      connection.execute("INSERT INTO certificate (id, name, order_id, csr, "
                         "poll_identifier) VALUES (" +
                         id + ", 'cert" + id + "', " + id + ", 'csr', 'p" + id +
                         "')");
    }
  }

  std::vector<Update> issued_updates(int count) {
    std::vector<Update> updates;
    for (int i = 0; i < count; ++i) {
      updates.push_back(issued_update(101 + i, 101 + i));
    }
    return updates;
  }

  int count_where(const std::string &sql) {
    return std::stoi(query("SELECT count(*) FROM " + sql).value_or("-1"));
  }
};

TEST_F(BatchTest, OneTransactionForBatch) {
  create();
  add_orders(20);
  auto store = open();
  ASSERT_TRUE(store) << store.error().message;

  auto batch = store->record_batch(issued_updates(20));

  EXPECT_FALSE(batch.database_error.has_value());
  ASSERT_EQ(batch.results.size(), 20U);
  for (const auto &result : batch.results) {
    EXPECT_TRUE(result) << result.error().message;
  }
  EXPECT_EQ(store->transaction_stats().committed, 1U);
  EXPECT_GT(store->transaction_stats().longest.count(), 0);
  EXPECT_EQ(count_where("orders WHERE id > 100 AND status_id = 5"), 20);
  EXPECT_EQ(count_where("certificate WHERE id > 100 AND cert IS NOT NULL"), 20);
}

TEST_F(BatchTest, RowLimitSplitsTransactions) {
  create();
  add_orders(25);
  StoreOptions options;
  options.max_transaction_rows = 10;
  auto store = open(options);
  ASSERT_TRUE(store) << store.error().message;

  auto batch = store->record_batch(issued_updates(25));

  EXPECT_FALSE(batch.database_error.has_value());
  EXPECT_EQ(batch.results.size(), 25U);
  EXPECT_EQ(store->transaction_stats().committed, 3U);
  EXPECT_EQ(count_where("orders WHERE id > 100 AND status_id = 5"), 25);
}

TEST_F(BatchTest, TimeLimitSplitsTransactions) {
  create();
  add_orders(5);
  StoreOptions options;
  options.max_transaction_time = std::chrono::milliseconds(0);
  auto store = open(options);
  ASSERT_TRUE(store) << store.error().message;

  auto batch = store->record_batch(issued_updates(5));

  EXPECT_EQ(batch.results.size(), 5U);
  // Each transaction is past the limit after its first update.
  EXPECT_EQ(store->transaction_stats().committed, 5U);
  EXPECT_EQ(count_where("orders WHERE id > 100 AND status_id = 5"), 5);
}

TEST_F(BatchTest, ConflictSkipsOneUpdate) {
  create();
  add_orders(3);
  auto store = open();
  ASSERT_TRUE(store) << store.error().message;
  Connection(m_path).execute("UPDATE orders SET status_id = 1 WHERE id = 102");

  std::vector<Update> updates = issued_updates(3);
  updates.insert(updates.begin() + 1, issued_update(1, 1));
  updates[1].certificate.reset(); // an issued update without certificate
  auto batch = store->record_batch(updates);

  EXPECT_FALSE(batch.database_error.has_value());
  ASSERT_EQ(batch.results.size(), 4U);
  EXPECT_TRUE(batch.results[0]);
  ASSERT_FALSE(batch.results[1]);
  EXPECT_EQ(batch.results[1].error().kind, ErrorKind::check);
  ASSERT_FALSE(batch.results[2]);
  EXPECT_EQ(batch.results[2].error().kind, ErrorKind::conflict);
  EXPECT_TRUE(batch.results[3]);
  EXPECT_EQ(store->transaction_stats().committed, 1U);
  EXPECT_EQ(order_status_id(101), "5");
  EXPECT_EQ(order_status_id(102), "1");
  EXPECT_EQ(certificate_column("cert", 102), std::nullopt);
  EXPECT_EQ(order_status_id(103), "5");
  EXPECT_EQ(order_status_id(1), "4");
}

TEST_F(BatchTest, LockedBatchWritesNothing) {
  create();
  add_orders(5);
  StoreOptions options;
  options.busy_timeout = std::chrono::milliseconds(100);
  auto store = open(options);
  ASSERT_TRUE(store) << store.error().message;

  Connection other(m_path);
  other.execute("BEGIN EXCLUSIVE");
  auto batch = store->record_batch(issued_updates(5));
  other.execute("COMMIT");

  ASSERT_TRUE(batch.database_error.has_value());
  EXPECT_EQ(batch.database_error->kind, ErrorKind::busy);
  EXPECT_TRUE(batch.results.empty());
  EXPECT_EQ(store->transaction_stats().committed, 0U);
  EXPECT_EQ(count_where("orders WHERE id > 100 AND status_id = 4"), 5);
  EXPECT_EQ(count_where("certificate WHERE id > 100 AND cert IS NULL"), 5);
}

// A process killed while it writes a grouped transaction leaves each
// certificate row and its order status together: either the whole batch
// was committed or the next connection rolls its hot journal back.
TEST_F(BatchTest, KilledBatchKeepsRowsWithStatus) {
  constexpr int k_orders = 100;
  create();
  add_orders(k_orders);
  const pid_t child = fork();
  ASSERT_NE(child, -1);
  if (child == 0) {
    auto store = Store::open(m_path);
    if (!store) {
      _exit(2);
    }
    // The journal exists from the transaction's first write to its COMMIT,
    // so a kill as soon as it appears lands inside the transaction, unless
    // the COMMIT wins the race.
    const std::string journal = m_path.string() + "-journal";
    std::thread killer([&journal] {
      while (!std::filesystem::exists(journal)) {
      }
      kill(getpid(), SIGKILL);
    });
    killer.detach();
    auto batch = store->record_batch(issued_updates(k_orders));
    _exit(batch.database_error ? 3 : 0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  const bool killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
  const bool finished = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  ASSERT_TRUE(killed || finished) << "child status " << status;

  const int valid = count_where("orders WHERE id > 100 AND status_id = 5");
  EXPECT_TRUE(valid == 0 || valid == k_orders) << valid << " orders valid";
  EXPECT_EQ(count_where("orders o JOIN certificate c ON c.order_id = o.id "
                        "WHERE o.id > 100 AND (o.status_id = 5) != "
                        "(c.cert IS NOT NULL)"),
            0);
  if (!killed) {
    EXPECT_EQ(valid, k_orders);
  }
  std::cout << "batch of " << k_orders << ": "
            << (killed ? "killed" : "not killed") << ", " << valid
            << " orders valid\n";
}

TEST_F(StoreTest, MovedStoreWorks) {
  create();
  auto store = open();
  ASSERT_TRUE(store) << store.error().message;
  Store moved = std::move(*store);
  auto list = moved.pending();
  ASSERT_TRUE(list) << list.error().message;
  EXPECT_EQ(list->requests.size(), 2U);
}

} // namespace
