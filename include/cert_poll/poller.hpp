// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "cert_poll/ca_handler.hpp"
#include "cert_poll/error.hpp"
#include "cert_poll/store.hpp"

#include <optional>
#include <string>
#include <vector>

namespace cert_poll {

struct PassOptions {
  bool dry_run = false;                  // contact the CA, write nothing
  std::optional<std::string> order_name; // only this order
};

// What happened to one request in a pass.
struct RequestReport {
  std::string order_name;
  std::string certificate_name;
  Outcome outcome = Outcome::failed;
  std::string message;
  // Nothing was written because another process changed the order while
  // it was polled; `outcome` is what the CA returned.
  bool skipped = false;
};

struct PassSummary {
  int issued = 0;
  int pending = 0;
  int rejected = 0;
  int failed = 0;
  // Rows without a poll identifier, and orders changed by another process
  // while they were polled.
  int skipped = 0;
  std::vector<RequestReport> requests;
  // Set when a write found the database locked past the busy timeout. The
  // pass then stops asking the CA; the requests not reached count as failed.
  std::optional<Error> database_error;
};

// Runs one poll pass: list the pending requests, poll each through
// `handler`, check issued certificates, record each result. A request that
// cannot be polled or stored counts as failed and the pass goes on, unless
// the database stays locked (see PassSummary::database_error). A request
// that is still pending with the stored error and poll identifier causes no
// write. Only a database failure that stops the listing fails the pass.
Result<PassSummary>
run_pass(Store &store, CaHandler &handler, const PassOptions &options);

} // namespace cert_poll
