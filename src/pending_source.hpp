// SPDX-License-Identifier: Apache-2.0
#pragma once

// The requests of a pass, read from the store a page at a time.

#include "cert_poll/poller.hpp"
#include "cert_poll/store.hpp"

#include <cstdint>
#include <deque>
#include <optional>

namespace cert_poll::detail {

// Feeds the pass its requests: page by page from the whole pending list,
// or the rows of one order (--order), which are few. Rows without a poll
// identifier are counted in PassSummary::skipped and logged at debug level.
class PendingSource {
public:
  PendingSource(Store &store, const PassOptions &options, PassSummary &summary)
      : m_store(store), m_options(options), m_summary(summary) {}

  // Reads the first page, so that a database that cannot be listed fails
  // the pass before any request is polled.
  Result<void> read_first_page() { return fill(); }

  // Returns the next request, reading pages as needed, or nullopt after the
  // last one.
  Result<std::optional<PendingRequest>> next();

private:
  Result<void> fill();

  Store &m_store;
  const PassOptions &m_options;
  PassSummary &m_summary;
  std::deque<PendingRequest> m_buffer;
  // The certificate id the next page starts after, nullopt for the first.
  std::optional<std::int64_t> m_after;
  bool m_last_page = false;
};

} // namespace cert_poll::detail
