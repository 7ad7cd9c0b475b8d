// SPDX-License-Identifier: Apache-2.0
#include "cert_poll/poller.hpp"

#include "cert_poll/certificate_check.hpp"

#include <spdlog/spdlog.h>

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
Update make_update(const PendingRequest &request, const PollResult &result) {
  Update update;
  update.certificate_id = request.certificate_id;
  update.order_id = request.order_id;

  switch (result.status) {
  case PollStatus::issued: {
    auto checked = check_issued_certificate(
        result.chain_pem, result.cert_raw, request.csr);
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

// Writes one update and reports what is stored afterwards. A failed write
// turns the outcome into failed, and the request is polled again next run
// because nothing of it was stored. An order that another process changed
// meanwhile is skipped: that is no fault of the CA or of the database. A
// database that stays locked, is full or fails to write is stored in
// `database_error`, which ends the pass.
RequestReport record_update(Store &store,
                            const PendingRequest &request,
                            const Update &update,
                            const PassOptions &options,
                            std::optional<Error> &database_error) {
  RequestReport report{request.order_name,
                       request.certificate_name,
                       update.outcome,
                       describe(update)};
  if (options.dry_run || already_stored(request, update)) {
    return report;
  }
  auto written = store.record(update);
  if (written) {
    return report;
  }
  if (written.error().kind == ErrorKind::conflict) {
    report.skipped = true;
    report.message = written.error().message;
    return report;
  }
  if (written.error().kind == ErrorKind::busy ||
      written.error().kind == ErrorKind::database) {
    database_error = written.error();
  }
  report.outcome = Outcome::failed;
  report.message = "not stored: " + written.error().message;
  return report;
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

void add_not_polled(PassSummary &summary,
                    const PendingRequest &request,
                    std::string message) {
  RequestReport report{request.order_name,
                       request.certificate_name,
                       Outcome::failed,
                       std::move(message)};
  report.not_polled = true;
  spdlog::debug("order {}, certificate {}: {}",
                in_quotes(request.order_name),
                in_quotes(request.certificate_name),
                report.message);
  ++summary.not_polled;
  summary.requests.push_back(std::move(report));
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

// Checks one poll result, records it, and logs and counts the outcome.
// The first issued certificate of a pass warns about missing columns.
void record_result(Store &store,
                   const PendingRequest &request,
                   const PollResult &result,
                   const PassOptions &options,
                   PassSummary &summary,
                   bool &warned_missing_columns) {
  Update update = make_update(request, result);
  if (update.outcome == Outcome::issued && !warned_missing_columns) {
    warn_missing_columns(store);
    warned_missing_columns = true;
  }
  RequestReport report =
      record_update(store, request, update, options, summary.database_error);
  log_outcome(request, report, options.dry_run);
  count(summary, report);
  summary.requests.push_back(std::move(report));
}

// Polls and records each request in turn until a write fails on the
// database itself, the deadline passes or a stop is requested.
void poll_requests(Store &store,
                   CaHandler &handler,
                   const std::vector<PendingRequest> &requests,
                   const PassOptions &options,
                   PassSummary &summary) {
  handler.set_deadline(options.deadline);
  handler.set_stop_flag(options.stop_requested);
  bool warned_missing_columns = false;
  std::optional<StopReason> stopped;
  for (const auto &request : requests) {
    if (summary.database_error) {
      // The database stayed locked or failed a write: polling the rest
      // would only fetch results from the CA that cannot be stored.
      summary.requests.push_back(
          {request.order_name,
           request.certificate_name,
           Outcome::failed,
           "not polled: the database failed an earlier write"});
      ++summary.failed;
      continue;
    }
    if (!stopped) {
      stopped = stop_reason(options);
    }
    if (stopped) {
      add_not_polled(summary, request, "not polled: " + to_text(*stopped));
      continue;
    }

    PollResult result = handler.poll(request);
    if (result.status == PollStatus::failed) {
      // Storing the error would blame the CA for a cut that came from here.
      // The HTTP client has logged the failed call at debug level.
      stopped = stop_reason(options);
      if (stopped) {
        add_not_polled(summary,
                       request,
                       "poll interrupted, nothing stored: " +
                           to_text(*stopped));
        continue;
      }
    }
    record_result(
        store, request, result, options, summary, warned_missing_columns);
  }
  if (stopped) {
    spdlog::warn("{} of {} requests not polled: {}. The next run polls them",
                 summary.not_polled,
                 requests.size(),
                 to_text(*stopped));
  }
}

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

  auto pending = store.pending(options.order_name);
  if (!pending) {
    return std::unexpected(pending.error());
  }
  summary.skipped = static_cast<int>(pending->skipped.size());
  for (const auto &name : pending->skipped) {
    spdlog::debug("certificate {} has no poll identifier: skipped",
                  in_quotes(name));
  }

  poll_requests(store, handler, pending->requests, options, summary);
  return summary;
}

} // namespace cert_poll
