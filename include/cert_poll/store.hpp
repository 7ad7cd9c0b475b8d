// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "cert_poll/error.hpp"
#include "cert_poll/pending_request.hpp"

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <set>
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
};

// The list of requests to poll, and the certificate names skipped because
// their poll_identifier is NULL or empty.
struct PendingList {
  std::vector<PendingRequest> requests;
  std::vector<std::string> skipped;
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

private:
  Store(sqlite3 *db, std::filesystem::path path, Schema schema);

  sqlite3 *m_db = nullptr;
  std::filesystem::path m_path;
  std::unique_ptr<Schema> m_schema;
};

} // namespace cert_poll
