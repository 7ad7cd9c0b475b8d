// SPDX-License-Identifier: Apache-2.0
#include "support/acme_db.hpp"

#include <stdexcept>

#include <sqlite3.h>

#include "support/test_support.hpp"

namespace test_support {

namespace {

std::filesystem::path schema_file(SchemaGeneration generation) {
  std::filesystem::path folder =
      std::filesystem::path(CERT_POLL_SOURCE_DIR) / "tests" / "support";
  return folder / (generation == SchemaGeneration::current
                       ? "acme_schema.sql"
                       : "acme_schema_2020.sql");
}

void check(int code, sqlite3 *db, const std::string &what) {
  if (code != SQLITE_OK && code != SQLITE_DONE && code != SQLITE_ROW) {
    throw std::runtime_error(what + ": " + sqlite3_errmsg(db));
  }
}

struct Statement {
  Statement(sqlite3 *db, const std::string &sql) : m_db(db) {
    check(sqlite3_prepare_v2(db, sql.c_str(), -1, &m_statement, nullptr),
          db,
          sql);
  }
  ~Statement() { sqlite3_finalize(m_statement); }
  Statement(const Statement &) = delete;
  Statement &operator=(const Statement &) = delete;

  void bind(int index, const std::string &text) {
    check(sqlite3_bind_text(
              m_statement, index, text.c_str(), -1, SQLITE_TRANSIENT),
          m_db,
          "bind");
  }
  void bind_null(int index) {
    check(sqlite3_bind_null(m_statement, index), m_db, "bind");
  }
  bool step() {
    int code = sqlite3_step(m_statement);
    check(code, m_db, "step");
    return code == SQLITE_ROW;
  }
  std::optional<std::string> text(int column) const {
    const unsigned char *value = sqlite3_column_text(m_statement, column);
    if (value == nullptr) {
      return std::nullopt;
    }
    return std::string(reinterpret_cast<const char *>(value));
  }
  std::int64_t integer(int column) const {
    return sqlite3_column_int64(m_statement, column);
  }

  sqlite3 *m_db;
  sqlite3_stmt *m_statement = nullptr;
};

bool has_column(sqlite3 *db,
                const std::string &table,
                const std::string &column) {
  Statement statement(
      db, "SELECT name FROM pragma_table_info('" + table + "') WHERE name = ?");
  statement.bind(1, column);
  return statement.step();
}

} // namespace

AcmeDatabase::AcmeDatabase(std::filesystem::path path,
                           SchemaGeneration generation)
    : m_path(std::move(path)) {
  check(sqlite3_open(m_path.c_str(), &m_db), m_db, "open " + m_path.string());
  execute(read_file(schema_file(generation)));
  execute("INSERT INTO account (name, alg, jwk, contact) VALUES "
          "('AcctTest', 'ES256', '{\"kty\": \"EC\"}', "
          "'[\"mailto:pki@example.com\"]')");
}

AcmeDatabase::~AcmeDatabase() {
  sqlite3_close(m_db);
}

void AcmeDatabase::execute(const std::string &sql) const {
  char *message = nullptr;
  if (sqlite3_exec(m_db, sql.c_str(), nullptr, nullptr, &message) !=
      SQLITE_OK) {
    std::string text = message != nullptr ? message : "unknown error";
    sqlite3_free(message);
    throw std::runtime_error("sqlite3_exec failed: " + text);
  }
}

void AcmeDatabase::add_order(const std::string &order_name,
                             const std::string &certificate_name,
                             const std::string &status,
                             const std::string &csr,
                             const std::string &poll_identifier,
                             const std::string &error) {
  Statement order(m_db,
                  "INSERT INTO orders (name, identifiers, account_id, "
                  "status_id, expires) VALUES (?, "
                  "'[{\"type\": \"dns\", \"value\": \"www.example.com\"}]', "
                  "1, (SELECT id FROM status WHERE name = ?), 1900000000)");
  order.bind(1, order_name);
  order.bind(2, status);
  order.step();
  std::int64_t order_id = sqlite3_last_insert_rowid(m_db);

  Statement certificate(m_db,
                        "INSERT INTO certificate (name, order_id, csr, "
                        "poll_identifier, error) VALUES (?, ?, ?, ?, ?)");
  certificate.bind(1, certificate_name);
  certificate.bind(2, std::to_string(order_id));
  certificate.bind(3, csr);
  if (poll_identifier.empty()) {
    certificate.bind_null(4);
  } else {
    certificate.bind(4, poll_identifier);
  }
  if (error.empty()) {
    certificate.bind_null(5);
  } else {
    certificate.bind(5, error);
  }
  certificate.step();
}

CertificateRow AcmeDatabase::row(const std::string &certificate_name) const {
  bool derived = has_column(m_db, "certificate", "renewal_info");
  std::string columns = derived ? "c.serial, c.aki, c.renewal_info, "
                                  "c.issue_uts, c.expire_uts"
                                : "NULL, NULL, NULL, 0, 0";
  Statement statement(
      m_db,
      "SELECT s.name, c.cert, c.cert_raw, c.error, c.poll_identifier, " +
          columns +
          " FROM certificate c JOIN orders o ON o.id = c.order_id "
          "JOIN status s ON s.id = o.status_id WHERE c.name = ?");
  statement.bind(1, certificate_name);
  if (!statement.step()) {
    throw std::runtime_error("no certificate row " + certificate_name);
  }
  CertificateRow row;
  row.order_status = statement.text(0).value_or("");
  row.cert = statement.text(1);
  row.cert_raw = statement.text(2);
  row.error = statement.text(3);
  row.poll_identifier = statement.text(4);
  row.serial = statement.text(5);
  row.aki = statement.text(6);
  row.renewal_info = statement.text(7);
  row.issue_uts = statement.integer(8);
  row.expire_uts = statement.integer(9);
  return row;
}

std::string AcmeDatabase::dump() const {
  auto result =
      run_command("sqlite3 " + shell_quote(m_path.string()) + " .dump");
  return result.output;
}

std::string AcmeDatabase::schema_sql() const {
  auto result =
      run_command("sqlite3 " + shell_quote(m_path.string()) + " .schema");
  return result.output;
}

} // namespace test_support
