// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "cert_poll/ca_handler.hpp"
#include "cert_poll/error.hpp"
#include "cert_poll/store.hpp"

#include <atomic>
#include <chrono>
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
  std::vector<RequestReport> requests;
  // Set when a write failed on the database itself: locked past the busy
  // timeout, disk full, not writable or an I/O error. The pass then stops
  // asking the CA, and the requests not reached count as failed.
  std::optional<Error> database_error;
};

// Runs one poll pass: list the pending requests, poll each through
// `handler`, check issued certificates, record each result. A request that
// cannot be polled or stored counts as failed and the pass goes on, unless
// a write fails on the database itself (see PassSummary::database_error). A
// request that is still pending with the stored error and poll identifier
// causes no write. Once options.deadline passes or *options.stop_requested is
// true, the remaining requests are not polled and nothing is written for them.
// A poll that fails then counts as not polled too, because the deadline or the
// stop most likely cut it short. A result that arrived is still written. Only a
// database failure that stops the listing fails the pass.
Result<PassSummary>
run_pass(Store &store, CaHandler &handler, const PassOptions &options);

} // namespace cert_poll
