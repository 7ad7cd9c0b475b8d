// SPDX-License-Identifier: Apache-2.0
#include "cert_poll/poller.hpp"

#include "cert_poll/certificate_check.hpp"

#include <algorithm>

#include <spdlog/spdlog.h>

#include "pending_source.hpp"
#include "worker_pool.hpp"

namespace cert_poll {

namespace {

std::string in_quotes(std::string_view text) {
  return "'" + std::string(text) + "'";
}

// The poll identifier to store: the handler's new one, else the old one.
std::string next_poll_identifier(const PendingRequest &request,
                                 const PollResult &result) {
  return result.poll_identifier.value_or(request.poll_identifier);
}

Update failed_update(const PendingRequest &request,
                     const PollResult &result,
                     std::string message) {
  Update update;
  update.certificate_id = request.certificate_id;
  update.order_id = request.order_id;
  update.outcome = Outcome::failed;
  update.error = std::move(message);
  update.poll_identifier = next_poll_identifier(request, result);
  return update;
}

// Builds the row update from the handler's result. An issued certificate
// must pass the checks first, else the update records a failure.
Update make_update(const PendingRequest &request,
                   const PollResult &result,
                   x509::CertificateCache &issuers) {
  Update update;
  update.certificate_id = request.certificate_id;
  update.order_id = request.order_id;

  switch (result.status) {
  case PollStatus::issued: {
    auto checked = check_issued_certificate(
        result.chain_pem, result.cert_raw, request.csr, &issuers);
    if (!checked) {
      return failed_update(request, result, checked.error().message);
    }
    for (const auto &warning : checked->warnings) {
      spdlog::warn("order {}: {}", in_quotes(request.order_name), warning);
    }
    update.outcome = Outcome::issued;
    update.certificate = std::move(checked->certificate);
    // error and poll_identifier stay nullopt: the request is finished and
    // no longer in error, so both columns are cleared.
    return update;
  }
  case PollStatus::pending:
    update.outcome = Outcome::pending;
    update.poll_identifier = next_poll_identifier(request, result);
    return update;
  case PollStatus::rejected:
    update.outcome = Outcome::rejected;
    update.error =
        result.message.empty() ? "request rejected by the CA" : result.message;
    update.poll_identifier = next_poll_identifier(request, result);
    return update;
  case PollStatus::failed:
    break;
  }
  return failed_update(request, result, result.message);
}

std::string describe(const Update &update) {
  switch (update.outcome) {
  case Outcome::issued:
    return "certificate issued, order set to valid";
  case Outcome::rejected:
    return "request rejected, order set to invalid: " + *update.error;
  case Outcome::pending:
    return "still pending at the CA";
  case Outcome::failed:
    break;
  }
  return "poll failed, order stays processing: " + update.error.value_or("");
}

void log_outcome(const PendingRequest &request,
                 const RequestReport &report,
                 bool dry_run) {
  std::string prefix = "order " + in_quotes(request.order_name) +
                       ", certificate " + in_quotes(request.certificate_name) +
                       (dry_run ? ": would record: " : ": ");
  if (report.skipped) {
    spdlog::info("{}skipped: {}", prefix, report.message);
    return;
  }
  switch (report.outcome) {
  case Outcome::issued:
  case Outcome::rejected:
    spdlog::info("{}{}", prefix, report.message);
    break;
  case Outcome::pending:
    spdlog::debug("{}{}", prefix, report.message);
    break;
  case Outcome::failed:
    spdlog::error("{}{}", prefix, report.message);
    break;
  }
}

void count(PassSummary &summary, const RequestReport &report) {
  if (report.skipped) {
    ++summary.skipped;
    return;
  }
  switch (report.outcome) {
  case Outcome::issued:
    ++summary.issued;
    break;
  case Outcome::pending:
    ++summary.pending;
    break;
  case Outcome::rejected:
    ++summary.rejected;
    break;
  case Outcome::failed:
    ++summary.failed;
    break;
  }
}

// True when the stored row already contains what `update` would write, which
// is the common case for a request that is still pending.
bool already_stored(const PendingRequest &request, const Update &update) {
  if (update.outcome != Outcome::pending && update.outcome != Outcome::failed) {
    return false;
  }
  return update.error.value_or("") == request.error &&
         update.poll_identifier.value_or("") == request.poll_identifier;
}

void warn_missing_columns(const Store &store) {
  auto missing = store.missing_columns();
  if (missing.empty()) {
    return;
  }
  std::string names;
  for (const auto &name : missing) {
    names += (names.empty() ? "" : ", ") + name;
  }
  spdlog::warn("database {} has no certificate column {}: these values are "
               "not stored; run acme2certifier's database update to add them",
               in_quotes(store.path().string()),
               names);
}

// The reason a pass polls no further requests.
enum class StopReason {
  deadline,
  stop_requested,
};

std::optional<StopReason> stop_reason(const PassOptions &options) {
  if (options.stop_requested != nullptr && options.stop_requested->load()) {
    return StopReason::stop_requested;
  }
  if (options.deadline &&
      std::chrono::steady_clock::now() >= *options.deadline) {
    return StopReason::deadline;
  }
  return std::nullopt;
}

std::string to_text(StopReason reason) {
  switch (reason) {
  case StopReason::deadline:
    return "deadline reached (--max-runtime)";
  case StopReason::stop_requested:
    break;
  }
  return "stopped by a signal";
}

// Resolves --order: an unknown order is a usage error, an order that is not
// processing leaves nothing to poll.
Result<bool> order_is_processing(Store &store, const std::string &order_name) {
  auto status = store.order_status(order_name);
  if (!status) {
    return std::unexpected(status.error());
  }
  if (!*status) {
    return make_error(ErrorKind::usage,
                      "order " + in_quotes(order_name) + " not found in " +
                          in_quotes(store.path().string()) +
                          ": check the name in the orders table");
  }
  if (**status != "processing") {
    spdlog::info("order {} is {}, not processing: nothing to poll",
                 in_quotes(order_name),
                 in_quotes(**status));
    return false;
  }
  return true;
}

// A worker's output for one request.
struct PolledRequest {
  PendingRequest request;
  Update update;
  // Set when the request was not polled, or its poll failed, because of the
  // deadline or a stop request. `update` is empty then.
  std::optional<StopReason> stopped;
  bool interrupted = false; // the poll started and failed
};

// The number of waiting results that starts a write at once: as many as
// one transaction takes by default (StoreOptions::max_transaction_rows).
constexpr std::size_t k_batch_rows = StoreOptions{}.max_transaction_rows;

// One pass on the calling thread, which alone reads and writes the store,
// while a WorkerPool polls the CA.
class Pass {
public:
  Pass(Store &store,
       CaHandler &handler,
       const PassOptions &options,
       PassSummary &summary)
      : m_store(store), m_handler(handler), m_options(options),
        m_summary(summary) {}

  // Polls what `source` lists until it ends, a write fails on the database
  // itself, the deadline passes or a stop is requested. A failed page read
  // after the first is stored in database_error too.
  void run(detail::PendingSource &source) {
    const int jobs = std::max(1, m_options.jobs);
    // Twice the jobs keeps every thread busy while this thread writes.
    detail::WorkerPool<PolledRequest> pool(
        jobs,
        static_cast<std::size_t>(jobs) * 2,
        [this](PendingRequest request) { return poll(std::move(request)); });

    bool listed_all = false;
    while (true) {
      while (!listed_all && !pool.full()) {
        auto next = source.next();
        if (!next) {
          m_summary.database_error = next.error();
          listed_all = true;
        } else if (!*next) {
          listed_all = true;
        } else {
          dispatch(pool, std::move(**next));
        }
      }
      if (listed_all && pool.outstanding() == 0) {
        break;
      }
      for (auto &polled : pool.take_outputs(wait_until())) {
        handle(std::move(polled));
      }
      if (write_due()) {
        flush();
      }
      if (m_summary.database_error) {
        for (auto &request : pool.take_queued()) {
          add_database_failed(request);
        }
      }
    }
    flush();
    if (m_stopped) {
      spdlog::warn("{} of {} requests not polled: {}. The next run polls them",
                   m_summary.not_polled,
                   m_listed,
                   to_text(*m_stopped));
    }
  }

private:
  // Runs on a worker thread: polls one request and checks the result.
  PolledRequest poll(PendingRequest request) {
    PolledRequest polled{std::move(request), {}, {}, false};
    polled.stopped = stop_reason(m_options);
    if (polled.stopped) {
      return polled;
    }
    PollResult result = m_handler.poll(polled.request);
    if (result.status == PollStatus::failed) {
      // Storing the error would blame the CA for a cut that came from here.
      // The HTTP client has logged the failed call at debug level.
      polled.stopped = stop_reason(m_options);
      if (polled.stopped) {
        polled.interrupted = true;
        return polled;
      }
    }
    polled.update = make_update(polled.request, result, m_issuers);
    return polled;
  }

  void dispatch(detail::WorkerPool<PolledRequest> &pool,
                PendingRequest request) {
    ++m_listed;
    if (m_summary.database_error) {
      // The database stayed locked or failed a write: polling the rest
      // would only fetch results from the CA that cannot be stored.
      add_database_failed(request);
      return;
    }
    if (!m_stopped) {
      m_stopped = stop_reason(m_options);
    }
    if (m_stopped) {
      add_not_polled(request, "not polled: " + to_text(*m_stopped));
      return;
    }
    pool.push(std::move(request));
  }

  std::chrono::steady_clock::time_point wait_until() const {
    if (m_writes.empty()) {
      return std::chrono::steady_clock::now() + std::chrono::milliseconds(200);
    }
    return m_first_write_at + m_options.max_write_delay;
  }

  bool write_due() const {
    if (m_writes.empty()) {
      return false;
    }
    return m_writes.size() >= k_batch_rows ||
           std::chrono::steady_clock::now() >=
               m_first_write_at + m_options.max_write_delay;
  }

  void handle(PolledRequest polled) {
    if (polled.stopped) {
      if (!m_stopped) {
        m_stopped = polled.stopped;
      }
      add_not_polled(polled.request,
                     (polled.interrupted ? "poll interrupted, nothing stored: "
                                         : "not polled: ") +
                         to_text(*polled.stopped));
      return;
    }
    if (m_summary.database_error) {
      add_unstored(polled.request,
                   "not stored: the database failed an earlier write");
      return;
    }
    const Update &update = polled.update;
    if (update.outcome == Outcome::issued && !m_warned_missing_columns) {
      warn_missing_columns(m_store);
      m_warned_missing_columns = true;
    }
    if (m_options.dry_run || already_stored(polled.request, update)) {
      add_report(polled.request, stored_report(polled.request, update));
      return;
    }
    if (m_writes.empty()) {
      m_first_write_at = std::chrono::steady_clock::now();
    }
    m_writes.push_back(std::move(polled));
  }

  // Writes the waiting results and reports what is stored afterwards. A
  // failed write turns the outcome into failed, and the request is polled
  // again next run because nothing of it was stored. An order that another
  // process changed meanwhile is skipped: that is no fault of the CA or of
  // the database.
  void flush() {
    if (m_writes.empty()) {
      return;
    }
    std::vector<Update> updates;
    updates.reserve(m_writes.size());
    for (auto &polled : m_writes) {
      updates.push_back(std::move(polled.update));
    }
    BatchResult batch = m_store.record_batch(updates);
    if (batch.database_error) {
      spdlog::error("{} (results not stored: {})",
                    batch.database_error->message,
                    m_writes.size() - batch.results.size());
    }
    for (std::size_t i = 0; i < m_writes.size(); ++i) {
      const PendingRequest &request = m_writes[i].request;
      if (i >= batch.results.size()) {
        add_unstored(request, "not stored: " + batch.database_error->message);
        continue;
      }
      const Result<void> &written = batch.results[i];
      RequestReport report = stored_report(request, updates[i]);
      if (!written && written.error().kind == ErrorKind::conflict) {
        report.skipped = true;
        report.message = written.error().message;
      } else if (!written) {
        report =
            failed_report(request, "not stored: " + written.error().message);
      }
      add_report(request, std::move(report));
    }
    if (batch.database_error && !m_summary.database_error) {
      m_summary.database_error = std::move(batch.database_error);
    }
    m_writes.clear();
  }

  static RequestReport stored_report(const PendingRequest &request,
                                     const Update &update) {
    return RequestReport{.order_name = request.order_name,
                         .certificate_name = request.certificate_name,
                         .outcome = update.outcome,
                         .message = describe(update),
                         .certificate_id = request.certificate_id};
  }

  static RequestReport failed_report(const PendingRequest &request,
                                     std::string message) {
    return RequestReport{.order_name = request.order_name,
                         .certificate_name = request.certificate_name,
                         .outcome = Outcome::failed,
                         .message = std::move(message),
                         .certificate_id = request.certificate_id};
  }

  void add_database_failed(const PendingRequest &request) {
    RequestReport report = failed_report(
        request, "not polled: the database failed an earlier write");
    count(m_summary, report);
    keep(std::move(report));
  }

  static void log_debug(const PendingRequest &request,
                        const std::string &message) {
    spdlog::debug("order {}, certificate {}: {}",
                  in_quotes(request.order_name),
                  in_quotes(request.certificate_name),
                  message);
  }

  void add_not_polled(const PendingRequest &request, std::string message) {
    RequestReport report = failed_report(request, std::move(message));
    report.not_polled = true;
    log_debug(request, report.message);
    ++m_summary.not_polled;
    keep(std::move(report));
  }

  void add_report(const PendingRequest &request, RequestReport report) {
    log_outcome(request, report, m_options.dry_run);
    count(m_summary, report);
    keep(std::move(report));
  }

  // Counts a result that the database failed to store. It is logged at
  // debug level only, because the database error itself is logged once for
  // all of them.
  void add_unstored(const PendingRequest &request, std::string message) {
    RequestReport report = failed_report(request, std::move(message));
    log_debug(request, report.message);
    count(m_summary, report);
    keep(std::move(report));
  }

  void keep(RequestReport report) {
    if (m_options.keep_reports) {
      m_summary.requests.push_back(std::move(report));
    }
  }

  Store &m_store;
  CaHandler &m_handler;
  const PassOptions &m_options;
  PassSummary &m_summary;
  // The CA certificates of the chains, parsed once for all jobs.
  x509::CertificateCache m_issuers;
  std::vector<PolledRequest> m_writes; // results waiting for a transaction
  std::chrono::steady_clock::time_point m_first_write_at;
  std::optional<StopReason> m_stopped;
  std::size_t m_listed = 0;
  bool m_warned_missing_columns = false;
};

} // namespace

Result<PassSummary>
run_pass(Store &store, CaHandler &handler, const PassOptions &options) {
  PassSummary summary;
  if (options.order_name) {
    auto processing = order_is_processing(store, *options.order_name);
    if (!processing) {
      return std::unexpected(processing.error());
    }
    if (!*processing) {
      return summary;
    }
  }

  // The first page is read before any request is polled, so that a
  // database that cannot be listed fails the pass.
  detail::PendingSource source(store, options, summary);
  auto first_page = source.read_first_page();
  if (!first_page) {
    return std::unexpected(first_page.error());
  }

  handler.set_deadline(options.deadline);
  handler.set_stop_flag(options.stop_requested);
  const std::uint64_t requests_before = handler.requests_sent();
  store.reset_transaction_stats();

  Pass pass(store, handler, options, summary);
  pass.run(source);

  summary.ca_requests = handler.requests_sent() - requests_before;
  summary.transactions = store.transaction_stats().committed;
  summary.longest_transaction = store.transaction_stats().longest;
  std::stable_sort(summary.requests.begin(),
                   summary.requests.end(),
                   [](const RequestReport &a, const RequestReport &b) {
                     return a.certificate_id < b.certificate_id;
                   });
  return summary;
}

} // namespace cert_poll
