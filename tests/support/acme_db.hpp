// SPDX-License-Identifier: Apache-2.0
#pragma once

// Builds acme2certifier databases for tests from the schema files in
// tests/support, and reads rows back for assertions.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

struct sqlite3;

namespace test_support {

enum class SchemaGeneration { current, year_2020 };

// One certificate row with its order's status, as stored.
struct CertificateRow {
  std::string order_status;
  std::optional<std::string> cert;
  std::optional<std::string> cert_raw;
  std::optional<std::string> error;
  std::optional<std::string> poll_identifier;
  std::optional<std::string> serial;       // nullopt also when no column
  std::optional<std::string> aki;          // nullopt also when no column
  std::optional<std::string> renewal_info; // nullopt also when no column
  std::int64_t issue_uts = 0;
  std::int64_t expire_uts = 0;
};

// A database file made from a schema file, with one account.
class AcmeDatabase {
public:
  AcmeDatabase(std::filesystem::path path, SchemaGeneration generation);
  ~AcmeDatabase();
  AcmeDatabase(const AcmeDatabase &) = delete;
  AcmeDatabase &operator=(const AcmeDatabase &) = delete;

  const std::filesystem::path &path() const { return m_path; }

  // Inserts an order in `status` with one certificate row; an empty
  // poll_identifier is stored as NULL.
  void add_order(const std::string &order_name,
                 const std::string &certificate_name,
                 const std::string &status,
                 const std::string &csr,
                 const std::string &poll_identifier,
                 const std::string &error = "");

  CertificateRow row(const std::string &certificate_name) const;

  // Every table's rows as SQL text (like `sqlite3 .dump`), to prove that a
  // run changed nothing or nothing else.
  std::string dump() const;
  std::string schema_sql() const;

  void execute(const std::string &sql) const;

private:
  std::filesystem::path m_path;
  sqlite3 *m_db = nullptr;
};

} // namespace test_support
