// SPDX-License-Identifier: Apache-2.0
#include "pending_source.hpp"

#include <algorithm>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>

namespace cert_poll::detail {

Result<std::optional<PendingRequest>> PendingSource::next() {
  // A page may hold only rows without a poll identifier, so reading goes on
  // until a request turns up or the list ends.
  while (m_buffer.empty() && !m_last_page) {
    auto filled = fill();
    if (!filled) {
      return std::unexpected(filled.error());
    }
  }
  if (m_buffer.empty()) {
    return std::optional<PendingRequest>();
  }
  PendingRequest request = std::move(m_buffer.front());
  m_buffer.pop_front();
  return std::optional<PendingRequest>(std::move(request));
}

Result<void> PendingSource::fill() {
  std::vector<PendingRequest> requests;
  std::vector<std::string> skipped;
  if (m_options.order_name) {
    auto list = m_store.pending(m_options.order_name);
    if (!list) {
      return std::unexpected(list.error());
    }
    requests = std::move(list->requests);
    skipped = std::move(list->skipped);
    m_last_page = true;
  } else {
    auto page = m_store.pending_page(
        m_after, std::max<std::size_t>(m_options.page_size, 1));
    if (!page) {
      return std::unexpected(page.error());
    }
    requests = std::move(page->requests);
    skipped = std::move(page->skipped);
    // A page that is not the last is full, so it has a last row.
    m_after = page->last_certificate_id;
    m_last_page = page->last_page;
  }
  m_summary.skipped += static_cast<int>(skipped.size());
  for (const auto &name : skipped) {
    spdlog::debug("certificate '{}' has no poll identifier: skipped", name);
  }
  for (auto &request : requests) {
    m_buffer.push_back(std::move(request));
  }
  return {};
}

} // namespace cert_poll::detail
