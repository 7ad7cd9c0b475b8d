// SPDX-License-Identifier: Apache-2.0
#pragma once

// SQLite helpers for the store: owned statements, bound values, and errors
// that name the database file and what to do next.

#include "cert_poll/error.hpp"

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <sqlite3.h>

namespace cert_poll::detail {

struct StatementFinalizer {
  void operator()(sqlite3_stmt *statement) const {
    sqlite3_finalize(statement);
  }
};
using Statement = std::unique_ptr<sqlite3_stmt, StatementFinalizer>;

// A value bound to a statement parameter, where std::monostate binds NULL.
// Text is bound without a copy, so the viewed string must outlive the
// statement's execution.
using Value = std::variant<std::monostate, std::string_view, std::int64_t>;

// The connection and the file name used in messages, passed to the helpers
// below.
struct Database {
  sqlite3 *handle;
  const std::filesystem::path &path;
};

std::string quote_path(const std::filesystem::path &path);

// Quotes a table or column name as an SQL identifier. Only names taken from
// the detected schema pass through here, never data.
std::string quote_identifier(std::string_view name);

// Builds the error for a failed SQLite call, naming the action, the file and
// SQLite's own message. Call it before any other statement on the
// connection, which would replace sqlite3_errmsg.
Error sqlite_error(const Database &database, int code, std::string_view action);

// Compiles `sql` and binds `values` to its parameters ?1, ?2, ...
Result<Statement> prepare(const Database &database,
                          const std::string &sql,
                          const std::vector<Value> &values,
                          std::string_view action);

// Steps `statement` once. Returns true when it produced a row and false
// when it is done.
Result<bool> step(const Database &database,
                  sqlite3_stmt *statement,
                  std::string_view action);

// Runs a statement that returns no rows and returns the number of rows it
// changed.
Result<int> execute(const Database &database,
                    const std::string &sql,
                    const std::vector<Value> &values,
                    std::string_view action);

// Returns column `column` of the current row as text, or "" for NULL.
std::string column_text(sqlite3_stmt *statement, int column);

} // namespace cert_poll::detail
