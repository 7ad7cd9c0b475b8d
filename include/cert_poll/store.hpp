// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "cert_poll/error.hpp"
#include "cert_poll/pending_request.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

struct sqlite3;

namespace cert_poll {

// The layout the store detected in the database file.
struct Schema {
  // Table names: "orders"/"certificate"/"status" for acme2certifier's wsgi
  // handler, "acme_srv_order"/... or "acme_order"/... for its django handler.
  std::string order_table;
  std::string certificate_table;
  std::string status_table;
  std::set<std::string, std::less<>> certificate_columns;
  std::set<std::string, std::less<>> order_columns;
  std::int64_t processing_id = 0;
  std::int64_t valid_id = 0;
  std::int64_t invalid_id = 0;

  bool has_certificate_column(std::string_view name) const {
    return certificate_columns.contains(name);
  }
};

// The certificate columns derived from an issued chain, ready to store.
struct IssuedCertificate {
  std::string chain_pem;       // cert: PEM chain, leaf first
  std::string cert_raw;        // base64 DER of the leaf, one line
  std::int64_t issue_uts = 0;  // leaf notBefore, Unix seconds UTC
  std::int64_t expire_uts = 0; // leaf notAfter, Unix seconds UTC
  std::string serial;          // lowercase hex, even digit count
  std::string aki;             // lowercase hex keyIdentifier, may be empty
  std::string renewal_info;    // empty when the chain has no issuer
};

enum class Outcome { issued, pending, rejected, failed };

std::string_view to_string(Outcome outcome);

// The result of polling one request, as the store writes it.
struct Update {
  std::int64_t certificate_id = 0;
  std::int64_t order_id = 0;
  Outcome outcome = Outcome::failed;
  std::optional<std::string> error;             // nullopt stores NULL
  std::optional<std::string> poll_identifier;   // nullopt stores NULL
  std::optional<IssuedCertificate> certificate; // set iff outcome == issued
};

struct StoreOptions {
  // How long one statement waits for a lock held by another connection.
  // record() tries twice, so it can wait about twice this long.
  std::chrono::milliseconds busy_timeout{10000};
  // Open read-only (for --dry-run): record() then fails, and open() skips
  // the checks that the file and its folder are writable.
  bool read_only = false;
  // The maximum number of updates in one write transaction, and the time
  // after which a transaction commits and the next update starts a new one.
  // Both keep the write lock short, because acme2certifier waits only about
  // 5 s for it.
  std::size_t max_transaction_rows = 50;
  std::chrono::milliseconds max_transaction_time{20};
};

// The list of requests to poll, and the certificate names skipped because
// their poll_identifier is NULL or empty.
struct PendingList {
  std::vector<PendingRequest> requests;
  std::vector<std::string> skipped;
};

// One page of the pending list, read by pending_page().
struct PendingPage {
  std::vector<PendingRequest> requests;
  std::vector<std::string> skipped;
  // The certificate id of the last row read, where the next page starts;
  // nullopt when the page is empty.
  std::optional<std::int64_t> last_certificate_id;
  // True when no rows follow this page.
  bool last_page = false;
};

// The outcome of record_batch().
struct BatchResult {
  // One entry per update handled, in order: success, or the error of that
  // update alone (ErrorKind::conflict when its order changed meanwhile,
  // ErrorKind::check for an issued update without a certificate).
  std::vector<Result<void>> results;
  // Set when a transaction failed on the database itself: a lock held past
  // the busy timeout, a full disk, an I/O error or a read-only file. The
  // updates from results.size() on were not written.
  std::optional<Error> database_error;
};

// Counts of the write transactions a store committed.
struct TransactionStats {
  std::uint64_t committed = 0;
  // The maximum time from BEGIN IMMEDIATE taking the write lock to COMMIT.
  std::chrono::microseconds longest{0};
};

// acme2certifier's database. The only code that contains SQL. It never
// creates a database file, changes the schema or the journal mode.
class Store {
public:
  // Opens an existing database file and detects its schema. A missing file,
  // a file that is not SQLite, or one without acme2certifier's tables is an
  // ErrorKind::database error that names the path. Unless
  // options.read_only is set, so is a file or folder that the effective user
  // cannot write, because record() would fail for every request.
  static Result<Store> open(const std::filesystem::path &path,
                            const StoreOptions &options = {});

  Store(Store &&other) noexcept;
  Store &operator=(Store &&other) noexcept;
  ~Store();

  const Schema &schema() const { return *m_schema; }
  const std::filesystem::path &path() const { return m_path; }

  // Derived columns (renewal_info, aki, serial, issue_uts, expire_uts) that
  // this database's certificate table lacks, so record() cannot store them.
  std::vector<std::string> missing_columns() const;

  // Lists the certificates whose order is `processing`, oldest first; with
  // `order_name`, only that order's. A lock held by another process past the
  // busy timeout gives ErrorKind::busy, here and in order_status().
  Result<PendingList> pending(std::optional<std::string_view> order_name = {});

  // Lists every certificate whose order is `processing`, oldest first, like
  // pending() but with the rows whose poll_identifier is NULL or empty kept,
  // their poll_identifier empty. With `order_name`, only that order's. For
  // reports such as --list, which show what pending() would skip.
  Result<std::vector<PendingRequest>>
  processing_requests(std::optional<std::string_view> order_name = {});

  // Reads at most `limit` rows of the pending list, as pending() orders
  // them, starting after certificate id `after_certificate_id`, or at the
  // first row for nullopt. SQLite allows ids of 0 and below, so no id value
  // stands for the start. Memory stays bounded by the page size, however
  // many requests are pending.
  Result<PendingPage>
  pending_page(std::optional<std::int64_t> after_certificate_id,
               std::size_t limit);

  // Counts the certificates whose order is `processing`, with or without a
  // poll identifier.
  Result<std::size_t> count_processing();

  // Returns the status name of the order called `order_name`, or nullopt
  // when no such order exists.
  Result<std::optional<std::string>> order_status(std::string_view order_name);

  // Writes `update` in one transaction: the certificate row's columns and,
  // for issued or rejected, the order status. The order must still be
  // `processing`; otherwise nothing is written and the error kind is
  // ErrorKind::conflict. SQLITE_BUSY past the busy timeout rolls the
  // transaction back and retries once after a short pause. A second
  // SQLITE_BUSY gives ErrorKind::busy.
  Result<void> record(const Update &update);

  // Writes `updates` in as few transactions as StoreOptions'
  // max_transaction_rows and max_transaction_time allow. Each update is
  // written whole or not at all, with the checks and the busy retry of
  // record(), and a conflict skips that update alone. A failure of the
  // database itself stops the batch (see BatchResult::database_error).
  BatchResult record_batch(std::span<const Update> updates);

  // The write transactions committed since open() or the last reset.
  const TransactionStats &transaction_stats() const { return m_transactions; }
  void reset_transaction_stats() { m_transactions = {}; }

private:
  Store(sqlite3 *db,
        std::filesystem::path path,
        Schema schema,
        StoreOptions options);

  // Runs one write transaction over the first updates of `updates`, trying
  // again once after SQLITE_BUSY. Returns one result per update it took.
  Result<std::vector<Result<void>>>
  write_with_retry(std::span<const Update> updates);

  sqlite3 *m_db = nullptr;
  std::filesystem::path m_path;
  std::unique_ptr<Schema> m_schema;
  StoreOptions m_options;
  TransactionStats m_transactions;
};

} // namespace cert_poll
