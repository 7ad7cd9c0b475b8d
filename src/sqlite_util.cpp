// SPDX-License-Identifier: Apache-2.0
#include "sqlite_util.hpp"

namespace cert_poll::detail {

namespace {

bool is_lock_code(int code) {
  int primary = code & 0xff;
  return primary == SQLITE_BUSY || primary == SQLITE_LOCKED;
}

Result<void> bind_value(const Database &database,
                        sqlite3_stmt *statement,
                        int index,
                        const Value &value,
                        std::string_view action) {
  int code = SQLITE_OK;
  if (const auto *text = std::get_if<std::string_view>(&value)) {
    // A null data pointer would bind NULL, not the empty text. A null
    // destructor (SQLITE_STATIC) binds without copying the text.
    const char *data = text->data() != nullptr ? text->data() : "";
    code = sqlite3_bind_text64(
        statement, index, data, text->size(), nullptr, SQLITE_UTF8);
  } else if (const auto *number = std::get_if<std::int64_t>(&value)) {
    code = sqlite3_bind_int64(statement, index, *number);
  } else {
    code = sqlite3_bind_null(statement, index);
  }
  if (code != SQLITE_OK) {
    return std::unexpected(sqlite_error(database, code, action));
  }
  return {};
}

Result<void> bind_all(const Database &database,
                      sqlite3_stmt *statement,
                      const std::vector<Value> &values,
                      std::string_view action) {
  for (std::size_t i = 0; i < values.size(); ++i) {
    auto bound = bind_value(
        database, statement, static_cast<int>(i + 1), values[i], action);
    if (!bound) {
      return bound;
    }
  }
  return {};
}

} // namespace

std::string quote_path(const std::filesystem::path &path) {
  return "'" + path.string() + "'";
}

std::string quote_identifier(std::string_view name) {
  std::string quoted = "\"";
  for (char c : name) {
    if (c == '"') {
      quoted += '"';
    }
    quoted += c;
  }
  quoted += '"';
  return quoted;
}

Error sqlite_error(const Database &database,
                   int code,
                   std::string_view action) {
  std::string detail = database.handle != nullptr
                           ? sqlite3_errmsg(database.handle)
                           : sqlite3_errstr(code);
  std::string path = quote_path(database.path);
  int primary = code & 0xff;

  if (is_lock_code(code)) {
    return Error{ErrorKind::busy,
                 "database " + path +
                     " is locked by another process: " + std::string(action) +
                     " failed (" + detail + "): try again later"};
  }
  if (primary == SQLITE_READONLY || primary == SQLITE_CANTOPEN ||
      primary == SQLITE_PERM) {
    return Error{ErrorKind::database,
                 std::string(action) + " failed on database " + path + " (" +
                     detail +
                     "): check the permissions of the file and its folder"};
  }
  if (primary == SQLITE_FULL) {
    return Error{ErrorKind::database,
                 std::string(action) + " failed on database " + path + " (" +
                     detail +
                     "): free space on the file system that holds it, then "
                     "run cert_poll again"};
  }
  if (primary == SQLITE_IOERR) {
    return Error{ErrorKind::database,
                 std::string(action) + " failed on database " + path + " (" +
                     detail +
                     "): check the file system that holds it for free space "
                     "and errors"};
  }
  if (primary == SQLITE_NOTADB) {
    return Error{ErrorKind::database,
                 "database " + path + " is not a SQLite database (" + detail +
                     "): check [DBhandler] dbfile or pass --db"};
  }
  return Error{ErrorKind::database,
               std::string(action) + " failed on database " + path + ": " +
                   detail};
}

Result<Statement> prepare(const Database &database,
                          const std::string &sql,
                          const std::vector<Value> &values,
                          std::string_view action) {
  sqlite3_stmt *raw = nullptr;
  int code = sqlite3_prepare_v2(database.handle,
                                sql.c_str(),
                                static_cast<int>(sql.size() + 1),
                                &raw,
                                nullptr);
  Statement statement(raw);
  if (code != SQLITE_OK) {
    return std::unexpected(sqlite_error(database, code, action));
  }
  auto bound = bind_all(database, statement.get(), values, action);
  if (!bound) {
    return std::unexpected(bound.error());
  }
  return statement;
}

Result<bool> step(const Database &database,
                  sqlite3_stmt *statement,
                  std::string_view action) {
  int code = sqlite3_step(statement);
  if (code == SQLITE_ROW) {
    return true;
  }
  if (code == SQLITE_DONE) {
    return false;
  }
  return std::unexpected(sqlite_error(database, code, action));
}

Result<int> execute(const Database &database,
                    const std::string &sql,
                    const std::vector<Value> &values,
                    std::string_view action) {
  auto statement = prepare(database, sql, values, action);
  if (!statement) {
    return std::unexpected(statement.error());
  }
  auto stepped = step(database, statement->get(), action);
  if (!stepped) {
    return std::unexpected(stepped.error());
  }
  return sqlite3_changes(database.handle);
}

std::string column_text(sqlite3_stmt *statement, int column) {
  const unsigned char *text = sqlite3_column_text(statement, column);
  if (text == nullptr) {
    return {};
  }
  int size = sqlite3_column_bytes(statement, column);
  return std::string(reinterpret_cast<const char *>(text),
                     static_cast<std::size_t>(size));
}

} // namespace cert_poll::detail
