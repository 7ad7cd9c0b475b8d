// SPDX-License-Identifier: Apache-2.0
#include "cert_poll/store.hpp"

#include <algorithm>
#include <array>
#include <fcntl.h>
#include <system_error>
#include <thread>
#include <unistd.h>
#include <utility>
#include <variant>

#include <spdlog/spdlog.h>
#include <sqlite3.h>

#include "sqlite_util.hpp"
#include "store_schema.hpp"
#include "store_write.hpp"

namespace cert_poll {

using detail::column_text;
using detail::Database;
using detail::detect_schema;
using detail::execute;
using detail::prepare;
using detail::quote_identifier;
using detail::quote_path;
using detail::read_order_state;
using detail::sqlite_error;
using detail::step;
using detail::Value;
using detail::write_rows;

namespace {

// The number of times record() runs its whole transaction while the
// database stays locked past the busy timeout, and the pause in between.
// Each attempt can wait the full busy timeout, so a lock held by another
// process costs a request about twice the busy timeout.
constexpr int k_record_attempts = 2;
constexpr std::chrono::milliseconds k_retry_pause{100};

constexpr std::array<std::string_view, 5> k_derived_columns{
    "renewal_info", "aki", "serial", "issue_uts", "expire_uts"};

std::string_view trim(std::string_view text) {
  constexpr std::string_view whitespace = " \t\r\n\f\v";
  std::size_t first = text.find_first_not_of(whitespace);
  if (first == std::string_view::npos) {
    return {};
  }
  std::size_t last = text.find_last_not_of(whitespace);
  return text.substr(first, last - first + 1);
}

Result<void> check_file(const std::filesystem::path &path) {
  std::error_code error;
  auto status = std::filesystem::status(path, error);
  if (!std::filesystem::exists(status)) {
    return make_error(ErrorKind::database,
                      "database " + quote_path(path) +
                          " not found: check [DBhandler] dbfile or pass --db");
  }
  if (std::filesystem::is_directory(status)) {
    return make_error(ErrorKind::database,
                      "database " + quote_path(path) +
                          " is a folder, not a file: check [DBhandler] "
                          "dbfile or pass --db");
  }
  return {};
}

// Returns the folder in which SQLite creates the journal, or the -wal and
// -shm files. sqlite3_db_filename returns the absolute path with symbolic
// links resolved (checked with SQLite 3.40.1), so this is the folder of the
// real file.
std::filesystem::path journal_folder(const Database &database) {
  const char *name = sqlite3_db_filename(database.handle, "main");
  std::filesystem::path file =
      name != nullptr && *name != '\0' ? name : database.path;
  std::filesystem::path folder = file.parent_path();
  if (folder.empty()) {
    return ".";
  }
  return folder;
}

// Fails unless the connection can write the file and SQLite can create its
// journal next to it. SQLite opens a file that the effective user cannot
// write read-only without reporting an error, and a folder in which it
// cannot create the journal would only fail the first write.
Result<void> check_writable(const Database &database) {
  if (sqlite3_db_readonly(database.handle, "main") == 1) {
    return make_error(ErrorKind::database,
                      "database " + quote_path(database.path) +
                          " is not writable by this user: check the "
                          "permissions of the file (cert_poll must run as "
                          "the user acme2certifier runs as)");
  }
  std::filesystem::path folder = journal_folder(database);
  if (::faccessat(AT_FDCWD, folder.c_str(), W_OK, AT_EACCESS) != 0) {
    return make_error(ErrorKind::database,
                      "folder " + quote_path(folder) + " of database " +
                          quote_path(database.path) +
                          " is not writable by this user: SQLite creates "
                          "its journal there, so check the permissions of "
                          "the folder");
  }
  return {};
}

void rollback(const Database &database) {
  // SQLite rolls back by itself after some errors, so the transaction may
  // already be gone.
  if (sqlite3_get_autocommit(database.handle) == 0) {
    sqlite3_exec(database.handle, "ROLLBACK", nullptr, nullptr, nullptr);
  }
}

// Runs `sql`, a statement of the transaction machinery such as SAVEPOINT.
Result<void> run_statement(const Database &database, const std::string &sql) {
  auto done = execute(database, sql, {}, "running " + sql);
  if (!done) {
    return std::unexpected(done.error());
  }
  return {};
}

// Writes one update inside its own savepoint, so that a conflict undoes
// this update alone. Returns the conflict as the inner result. The outer
// error is a failure of the database itself, which ends the transaction.
Result<Result<void>> write_in_savepoint(const Database &database,
                                        const Schema &schema,
                                        const Update &update) {
  if (update.outcome == Outcome::issued && !update.certificate) {
    return Result<void>(make_error(ErrorKind::check,
                                   "issued update for certificate id '" +
                                       std::to_string(update.certificate_id) +
                                       "' carries no certificate: nothing "
                                       "written"));
  }
  auto opened = run_statement(database, "SAVEPOINT update_row");
  if (!opened) {
    return std::unexpected(opened.error());
  }
  auto written = write_rows(database, schema, update);
  if (!written && written.error().kind != ErrorKind::conflict) {
    return std::unexpected(written.error());
  }
  if (!written) {
    auto undone = run_statement(database, "ROLLBACK TO update_row");
    if (!undone) {
      return std::unexpected(undone.error());
    }
  }
  auto released = run_statement(database, "RELEASE update_row");
  if (!released) {
    return std::unexpected(released.error());
  }
  return written;
}

// Runs one attempt at a write transaction over the first updates of
// `updates`. BEGIN IMMEDIATE takes the write lock up front, so that no
// statement inside has to upgrade a read lock, which can fail with
// SQLITE_BUSY without waiting for the busy timeout. The transaction takes
// updates until it contains limits.max_transaction_rows of them or has been
// open for limits.max_transaction_time, then commits. Returns one result per
// update it took.
Result<std::vector<Result<void>>>
write_transaction(const Database &database,
                  const Schema &schema,
                  std::span<const Update> updates,
                  const StoreOptions &limits,
                  TransactionStats &stats) {
  auto begun = run_statement(database, "BEGIN IMMEDIATE");
  if (!begun) {
    return std::unexpected(begun.error());
  }
  const auto started = std::chrono::steady_clock::now();
  std::vector<Result<void>> results;
  for (const Update &update : updates) {
    auto written = write_in_savepoint(database, schema, update);
    if (!written) {
      rollback(database);
      return std::unexpected(written.error());
    }
    results.push_back(std::move(*written));
    if (results.size() >= limits.max_transaction_rows ||
        std::chrono::steady_clock::now() - started >=
            limits.max_transaction_time) {
      break;
    }
  }
  auto committed = execute(database, "COMMIT", {}, "committing the update");
  if (!committed) {
    rollback(database);
    return std::unexpected(committed.error());
  }
  const auto duration = std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::steady_clock::now() - started);
  ++stats.committed;
  stats.longest = std::max(stats.longest, duration);
  return results;
}

// Builds the error for a read-only connection, which was opened so for a dry
// run or fell back to reading because the file is not writable.
Error read_only_error(const std::filesystem::path &path) {
  if (::faccessat(AT_FDCWD, path.c_str(), W_OK, AT_EACCESS) != 0) {
    return Error{ErrorKind::database,
                 "database " + quote_path(path) +
                     " is not writable, so nothing was written: check "
                     "the permissions of the file and its folder"};
  }
  return Error{ErrorKind::database,
               "database " + quote_path(path) +
                   " was opened read-only: nothing written"};
}

// Moves the rows with a poll identifier to `requests` and the names of the
// others, which a pass skips, to `skipped`.
void split_skipped(std::vector<PendingRequest> &rows,
                   std::vector<PendingRequest> &requests,
                   std::vector<std::string> &skipped) {
  for (auto &request : rows) {
    if (request.poll_identifier.empty()) {
      skipped.push_back(std::move(request.certificate_name));
    } else {
      requests.push_back(std::move(request));
    }
  }
}

// The rows read_processing() returns: all of them, one order's, or one page
// of at most `limit` rows after certificate id `after_certificate_id`.
struct ProcessingFilter {
  std::optional<std::string_view> order_name;
  std::optional<std::int64_t> after_certificate_id;
  std::optional<std::size_t> limit;
};

Result<std::vector<PendingRequest>>
read_processing(const Database &database,
                const Schema &schema,
                const ProcessingFilter &filter) {
  constexpr std::string_view action = "listing pending requests";

  // Older databases may lack orders.identifiers or certificate.created_at,
  // so those are selected only where they exist.
  std::string identifiers =
      schema.order_columns.contains("identifiers") ? "o.identifiers" : "NULL";
  std::string created_at =
      schema.has_certificate_column("created_at") ? "c.created_at" : "NULL";
  std::string sql = "SELECT c.id, c.name, c.order_id, o.name, c.csr, "
                    "c.poll_identifier, c.error, " +
                    identifiers + ", " + created_at + " FROM " +
                    quote_identifier(schema.certificate_table) + " AS c JOIN " +
                    quote_identifier(schema.order_table) +
                    " AS o ON o.id = c.order_id WHERE o.status_id = ?1";
  std::vector<Value> values{schema.processing_id};
  if (filter.order_name) {
    values.emplace_back(*filter.order_name);
    sql += " AND o.name = ?" + std::to_string(values.size());
  }
  if (filter.after_certificate_id) {
    values.emplace_back(*filter.after_certificate_id);
    sql += " AND c.id > ?" + std::to_string(values.size());
  }
  sql += " ORDER BY c.id";
  if (filter.limit) {
    values.emplace_back(static_cast<std::int64_t>(*filter.limit));
    sql += " LIMIT ?" + std::to_string(values.size());
  }

  auto statement = prepare(database, sql, values, action);
  if (!statement) {
    return std::unexpected(statement.error());
  }

  std::vector<PendingRequest> requests;
  while (true) {
    auto row = step(database, statement->get(), action);
    if (!row) {
      return std::unexpected(row.error());
    }
    if (!*row) {
      return requests;
    }
    sqlite3_stmt *s = statement->get();
    PendingRequest request{
        .certificate_id = sqlite3_column_int64(s, 0),
        .certificate_name = column_text(s, 1),
        .order_id = sqlite3_column_int64(s, 2),
        .order_name = column_text(s, 3),
        .csr = column_text(s, 4),
        // Surrounding whitespace would only break the identifier as a URL.
        .poll_identifier = std::string(trim(column_text(s, 5))),
        .error = column_text(s, 6),
        .identifiers = column_text(s, 7),
        .created_at = column_text(s, 8),
    };
    requests.push_back(std::move(request));
  }
}

} // namespace

std::string_view to_string(Outcome outcome) {
  switch (outcome) {
  case Outcome::issued:
    return "issued";
  case Outcome::pending:
    return "pending";
  case Outcome::rejected:
    return "rejected";
  case Outcome::failed:
    return "failed";
  }
  return "unknown";
}

Result<Store> Store::open(const std::filesystem::path &path,
                          const StoreOptions &options) {
  auto file = check_file(path);
  if (!file) {
    return std::unexpected(file.error());
  }

  // Without SQLITE_OPEN_CREATE, SQLite never creates the file, even if it
  // disappears after the check above.
  int flags = options.read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
  sqlite3 *handle = nullptr;
  int code = sqlite3_open_v2(path.c_str(), &handle, flags, nullptr);
  Store store(handle, path, Schema{}, options);
  Database database{handle, store.m_path};
  if (code != SQLITE_OK) {
    return std::unexpected(sqlite_error(database, code, "opening the file"));
  }
  sqlite3_extended_result_codes(handle, 1);
  sqlite3_busy_timeout(handle, static_cast<int>(options.busy_timeout.count()));
  if (!options.read_only) {
    auto writable = check_writable(database);
    if (!writable) {
      return std::unexpected(writable.error());
    }
  }

  auto schema = detect_schema(database);
  if (!schema) {
    return std::unexpected(schema.error());
  }
  *store.m_schema = std::move(*schema);
  spdlog::debug("database '{}': tables '{}', '{}', '{}'; status ids "
                "processing {}, valid {}, invalid {}",
                path.string(),
                store.m_schema->order_table,
                store.m_schema->certificate_table,
                store.m_schema->status_table,
                store.m_schema->processing_id,
                store.m_schema->valid_id,
                store.m_schema->invalid_id);
  return store;
}

Store::Store(sqlite3 *db,
             std::filesystem::path path,
             Schema schema,
             StoreOptions options)
    : m_db(db), m_path(std::move(path)),
      m_schema(std::make_unique<Schema>(std::move(schema))),
      m_options(options) {}

Store::Store(Store &&other) noexcept
    : m_db(std::exchange(other.m_db, nullptr)), m_path(std::move(other.m_path)),
      m_schema(std::move(other.m_schema)), m_options(other.m_options),
      m_transactions(other.m_transactions) {}

Store &Store::operator=(Store &&other) noexcept {
  if (this != &other) {
    sqlite3_close_v2(m_db);
    m_db = std::exchange(other.m_db, nullptr);
    m_path = std::move(other.m_path);
    m_schema = std::move(other.m_schema);
    m_options = other.m_options;
    m_transactions = other.m_transactions;
  }
  return *this;
}

Store::~Store() {
  sqlite3_close_v2(m_db);
}

std::vector<std::string> Store::missing_columns() const {
  std::vector<std::string> missing;
  for (std::string_view column : k_derived_columns) {
    if (!m_schema->has_certificate_column(column)) {
      missing.emplace_back(column);
    }
  }
  return missing;
}

Result<PendingList> Store::pending(std::optional<std::string_view> order_name) {
  auto rows = processing_requests(order_name);
  if (!rows) {
    return std::unexpected(rows.error());
  }
  PendingList list;
  split_skipped(*rows, list.requests, list.skipped);
  return list;
}

Result<std::vector<PendingRequest>>
Store::processing_requests(std::optional<std::string_view> order_name) {
  ProcessingFilter filter;
  filter.order_name = order_name;
  return read_processing(Database{m_db, m_path}, *m_schema, filter);
}

Result<PendingPage>
Store::pending_page(std::optional<std::int64_t> after_certificate_id,
                    std::size_t limit) {
  auto rows = read_processing(Database{m_db, m_path},
                              *m_schema,
                              {std::nullopt, after_certificate_id, limit});
  if (!rows) {
    return std::unexpected(rows.error());
  }
  PendingPage page;
  page.last_page = rows->size() < limit;
  if (!rows->empty()) {
    page.last_certificate_id = rows->back().certificate_id;
  }
  split_skipped(*rows, page.requests, page.skipped);
  return page;
}

Result<std::size_t> Store::count_processing() {
  const Schema &schema = *m_schema;
  Database database{m_db, m_path};
  constexpr std::string_view action = "counting pending requests";
  std::string sql = "SELECT count(*) FROM " +
                    quote_identifier(schema.certificate_table) + " AS c JOIN " +
                    quote_identifier(schema.order_table) +
                    " AS o ON o.id = c.order_id WHERE o.status_id = ?1";
  auto statement = prepare(database, sql, {schema.processing_id}, action);
  if (!statement) {
    return std::unexpected(statement.error());
  }
  auto row = step(database, statement->get(), action);
  if (!row) {
    return std::unexpected(row.error());
  }
  return static_cast<std::size_t>(sqlite3_column_int64(statement->get(), 0));
}

Result<std::optional<std::string>>
Store::order_status(std::string_view order_name) {
  Database database{m_db, m_path};
  auto state = read_order_state(database,
                                *m_schema,
                                order_name,
                                "reading the status of order '" +
                                    std::string(order_name) + "'");
  if (!state) {
    return std::unexpected(state.error());
  }
  if (!*state) {
    return std::optional<std::string>{};
  }
  if (!(*state)->status_name) {
    return make_error(ErrorKind::database,
                      "database " + quote_path(m_path) + ": order '" +
                          std::string(order_name) + "' has status id '" +
                          std::to_string((*state)->status_id) +
                          "', which table '" + m_schema->status_table +
                          "' does not contain");
  }
  return std::optional<std::string>{std::move(*(*state)->status_name)};
}

Result<void> Store::record(const Update &update) {
  BatchResult batch = record_batch(std::span(&update, 1));
  if (batch.database_error) {
    return std::unexpected(std::move(*batch.database_error));
  }
  return std::move(batch.results.front());
}

BatchResult Store::record_batch(std::span<const Update> updates) {
  BatchResult batch;
  if (updates.empty()) {
    return batch;
  }
  if (sqlite3_db_readonly(m_db, "main") == 1) {
    batch.database_error = read_only_error(m_path);
    return batch;
  }
  while (batch.results.size() < updates.size()) {
    auto written = write_with_retry(updates.subspan(batch.results.size()));
    if (!written) {
      batch.database_error = std::move(written.error());
      break;
    }
    for (auto &result : *written) {
      batch.results.push_back(std::move(result));
    }
  }
  return batch;
}

Result<std::vector<Result<void>>>
Store::write_with_retry(std::span<const Update> updates) {
  Database database{m_db, m_path};
  auto started = std::chrono::steady_clock::now();
  for (int attempt = 1;; ++attempt) {
    auto written = write_transaction(
        database, *m_schema, updates, m_options, m_transactions);
    if (written || written.error().kind != ErrorKind::busy) {
      return written;
    }
    if (attempt == k_record_attempts) {
      break;
    }
    spdlog::info("{}; retrying (attempt {} of {})",
                 written.error().message,
                 attempt + 1,
                 k_record_attempts);
    std::this_thread::sleep_for(k_retry_pause);
  }

  auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - started);
  return make_error(ErrorKind::busy,
                    "database " + quote_path(m_path) +
                        " is locked by another process: gave up after " +
                        std::to_string(k_record_attempts) + " attempts and " +
                        std::to_string(waited.count()) +
                        " ms of waiting in total, so nothing was written and "
                        "the requests will be polled again next run");
}

} // namespace cert_poll
