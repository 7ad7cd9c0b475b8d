// SPDX-License-Identifier: Apache-2.0
#include "store_schema.hpp"

#include <array>
#include <cctype>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace cert_poll::detail {

namespace {

// The order, certificate and status table names of one acme2certifier
// database layout.
struct TableSet {
  std::string_view order;
  std::string_view certificate;
  std::string_view status;
};

constexpr std::array<TableSet, 3> k_table_sets{{
    {"orders", "certificate", "status"},                           // wsgi
    {"acme_srv_order", "acme_srv_certificate", "acme_srv_status"}, // django
    {"acme_order", "acme_certificate", "acme_status"}, // django, older
}};

constexpr std::array<std::string_view, 8> k_required_certificate_columns{
    "id",
    "name",
    "cert",
    "cert_raw",
    "error",
    "order_id",
    "csr",
    "poll_identifier"};
constexpr std::array<std::string_view, 3> k_required_order_columns{
    "id", "name", "status_id"};
constexpr std::array<std::string_view, 2> k_required_status_columns{"id",
                                                                    "name"};

std::string to_lower(std::string_view text) {
  std::string lower(text);
  for (char &c : lower) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return lower;
}

using NameSet = std::set<std::string, std::less<>>;

enum class LetterCase { keep, lower };

// Returns the first column of every row of `sql`.
Result<NameSet> read_names(const Database &database,
                           const std::string &sql,
                           const std::vector<Value> &values,
                           std::string_view action,
                           LetterCase letter_case) {
  auto statement = prepare(database, sql, values, action);
  if (!statement) {
    return std::unexpected(statement.error());
  }

  NameSet names;
  while (true) {
    auto row = step(database, statement->get(), action);
    if (!row) {
      return std::unexpected(row.error());
    }
    if (!*row) {
      return names;
    }
    std::string name = column_text(statement->get(), 0);
    names.insert(letter_case == LetterCase::lower ? to_lower(name) : name);
  }
}

Result<NameSet> list_tables(const Database &database) {
  return read_names(database,
                    "SELECT name FROM sqlite_master WHERE type = 'table'",
                    {},
                    "reading the table list",
                    LetterCase::keep);
}

// Finds the table in `tables` whose name equals `name` without regard to
// case, as SQLite compares table names. Returns the name as stored.
std::optional<std::string> find_table(const NameSet &tables,
                                      std::string_view name) {
  for (const auto &table : tables) {
    if (to_lower(table) == name) {
      return table;
    }
  }
  return std::nullopt;
}

Result<void>
choose_tables(const Database &database, const NameSet &tables, Schema &schema) {
  for (const auto &set : k_table_sets) {
    auto order = find_table(tables, set.order);
    auto certificate = find_table(tables, set.certificate);
    auto status = find_table(tables, set.status);
    if (order && certificate && status) {
      schema.order_table = *order;
      schema.certificate_table = *certificate;
      schema.status_table = *status;
      return {};
    }
  }

  std::string looked_for;
  for (const auto &set : k_table_sets) {
    if (!looked_for.empty()) {
      looked_for += ", ";
    }
    looked_for += "'" + std::string(set.order) + "/" +
                  std::string(set.certificate) + "/" + std::string(set.status) +
                  "'";
  }
  return make_error(ErrorKind::database,
                    "database " + quote_path(database.path) +
                        " is not an acme2certifier database: none of the "
                        "table sets " +
                        looked_for +
                        " found: check [DBhandler] dbfile or pass --db");
}

// Returns the column names of `table` in lowercase, because SQLite
// compares column names without regard to case.
Result<NameSet> list_columns(const Database &database,
                             const std::string &table) {
  return read_names(database,
                    "SELECT name FROM pragma_table_info(?1)",
                    {table},
                    "reading the columns of table '" + table + "'",
                    LetterCase::lower);
}

template <std::size_t N>
Result<void> require_columns(const Database &database,
                             const std::string &table,
                             const NameSet &columns,
                             const std::array<std::string_view, N> &required) {
  for (std::string_view column : required) {
    if (!columns.contains(column)) {
      return make_error(
          ErrorKind::database,
          "database " + quote_path(database.path) + ": table '" + table +
              "' has no column '" + std::string(column) +
              "': update the database with acme2certifier's own tools");
    }
  }
  return {};
}

Result<void> read_columns(const Database &database, Schema &schema) {
  auto certificate_columns = list_columns(database, schema.certificate_table);
  if (!certificate_columns) {
    return std::unexpected(certificate_columns.error());
  }
  auto order_columns = list_columns(database, schema.order_table);
  if (!order_columns) {
    return std::unexpected(order_columns.error());
  }
  auto status_columns = list_columns(database, schema.status_table);
  if (!status_columns) {
    return std::unexpected(status_columns.error());
  }

  schema.certificate_columns = std::move(*certificate_columns);
  schema.order_columns = std::move(*order_columns);
  auto checked = require_columns(database,
                                 schema.certificate_table,
                                 schema.certificate_columns,
                                 k_required_certificate_columns);
  if (!checked) {
    return checked;
  }
  checked = require_columns(database,
                            schema.order_table,
                            schema.order_columns,
                            k_required_order_columns);
  if (!checked) {
    return checked;
  }
  return require_columns(database,
                         schema.status_table,
                         *status_columns,
                         k_required_status_columns);
}

// Looks up a status id by name, because a database need not number its
// status rows in acme2certifier's usual order.
Result<std::int64_t> find_status_id(const Database &database,
                                    const Schema &schema,
                                    std::string_view name) {
  std::string action = "reading status '" + std::string(name) + "'";
  auto statement =
      prepare(database,
              "SELECT id FROM " + quote_identifier(schema.status_table) +
                  " WHERE name = ?1 ORDER BY id LIMIT 1",
              {name},
              action);
  if (!statement) {
    return std::unexpected(statement.error());
  }
  auto row = step(database, statement->get(), action);
  if (!row) {
    return std::unexpected(row.error());
  }
  if (!*row) {
    return make_error(ErrorKind::database,
                      "database " + quote_path(database.path) + ": table '" +
                          schema.status_table + "' has no status '" +
                          std::string(name) +
                          "': check that the file is an acme2certifier "
                          "database");
  }
  return sqlite3_column_int64(statement->get(), 0);
}

Result<void> read_status_ids(const Database &database, Schema &schema) {
  auto processing = find_status_id(database, schema, "processing");
  if (!processing) {
    return std::unexpected(processing.error());
  }
  auto valid = find_status_id(database, schema, "valid");
  if (!valid) {
    return std::unexpected(valid.error());
  }
  auto invalid = find_status_id(database, schema, "invalid");
  if (!invalid) {
    return std::unexpected(invalid.error());
  }
  schema.processing_id = *processing;
  schema.valid_id = *valid;
  schema.invalid_id = *invalid;
  return {};
}

} // namespace

Result<Schema> detect_schema(const Database &database) {
  auto tables = list_tables(database);
  if (!tables) {
    return std::unexpected(tables.error());
  }

  Schema schema;
  auto chosen = choose_tables(database, *tables, schema);
  if (!chosen) {
    return std::unexpected(chosen.error());
  }
  auto columns = read_columns(database, schema);
  if (!columns) {
    return std::unexpected(columns.error());
  }
  auto ids = read_status_ids(database, schema);
  if (!ids) {
    return std::unexpected(ids.error());
  }
  return schema;
}

} // namespace cert_poll::detail
