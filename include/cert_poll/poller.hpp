// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "cert_poll/ca_handler.hpp"
#include "cert_poll/error.hpp"
#include "cert_poll/store.hpp"

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace cert_poll {

struct PassOptions {
  bool dry_run = false;                  // contact the CA, write nothing
  std::optional<std::string> order_name; // only this order
  // No request is started after this time, and the HTTP calls of the one
  // in progress end by it (--max-runtime).
  std::optional<std::chrono::steady_clock::time_point> deadline;
  // When it becomes true (a signal handler sets it), no request is started
  // and the HTTP call in progress is aborted. Never checked during a write.
  const std::atomic<bool> *stop_requested = nullptr;
  // The number of requests polled at once, each on its own thread (--jobs).
  int jobs = 8;
  // Keeps a RequestReport per request in PassSummary::requests, for --json.
  // Without it the pass's memory does not grow with the number of requests.
  bool keep_reports = true;
  // Rows of the pending list read from the database at a time.
  std::size_t page_size = 256;
  // The maximum time a result waits before its write transaction starts.
  // Results that arrive meanwhile share the transaction.
  std::chrono::milliseconds max_write_delay{50};
};

// The outcome of one request in a pass.
struct RequestReport {
  std::string order_name;
  std::string certificate_name;
  Outcome outcome = Outcome::failed;
  std::string message;
  // Nothing was written because another process changed the order while
  // it was polled; `outcome` is what the CA returned.
  bool skipped = false;
  // Nothing was written because the deadline or a stop request came before
  // the request was polled, or cut its poll short. `message` names which.
  bool not_polled = false;
  std::int64_t certificate_id = 0;
};

struct PassSummary {
  int issued = 0;
  int pending = 0;
  int rejected = 0;
  int failed = 0;
  // Rows without a poll identifier, and orders changed by another process
  // while they were polled.
  int skipped = 0;
  // Requests left for the next run by the deadline or a stop request.
  int not_polled = 0;
  // One report per request, ordered by certificate id, when
  // PassOptions::keep_reports is set.
  std::vector<RequestReport> requests;
  // HTTP requests sent to the CA.
  std::uint64_t ca_requests = 0;
  // Write transactions committed, and the longest of them from taking the
  // write lock to COMMIT.
  std::uint64_t transactions = 0;
  std::chrono::microseconds longest_transaction{0};
  // Set when a write failed on the database itself: locked past the busy
  // timeout, disk full, not writable or an I/O error. The pass then stops
  // asking the CA, and the requests not reached count as failed.
  std::optional<Error> database_error;
};

// Runs one poll pass: list the pending requests page by page, poll up to
// options.jobs of them at once through `handler`, check issued certificates,
// and record the results in short transactions on `store`, from the calling
// thread only. A request that cannot be polled or stored counts as failed and
// the pass goes on, unless a write fails on the database itself (see
// PassSummary::database_error). A request that is still pending with the
// stored error and poll identifier causes no write. Once options.deadline
// passes or *options.stop_requested is true, the remaining requests are not
// polled and nothing is written for them. A poll that fails then counts as not
// polled too, because the deadline or the stop most likely cut it short. A
// result that arrived is still written. Only a database failure that stops the
// listing fails the pass.
Result<PassSummary>
run_pass(Store &store, CaHandler &handler, const PassOptions &options);

} // namespace cert_poll
