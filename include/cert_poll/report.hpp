// SPDX-License-Identifier: Apache-2.0
#pragma once

// What cert_poll reports besides its log: the --list table, the --json
// document and the --metrics-file file for Prometheus' textfile collector.

#include "cert_poll/error.hpp"
#include "cert_poll/pending_request.hpp"
#include "cert_poll/poller.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cert_poll {

// The maximum width, in characters, of format_request_table()'s last error.
constexpr std::size_t k_error_column_width = 60;

// Returns `text` with control characters as spaces, cut to at most `width`
// characters (UTF-8 code points). A cut text ends with "...".
std::string cut_text(std::string_view text, std::size_t width);

// Returns the identifier values of orders.identifiers JSON text (a list of
// {"type": ..., "value": ...}), comma-separated. DNS names appear as they
// are, other types as "type:value". Text that is not such a list is
// returned as it is stored, and empty text gives an empty string.
std::string format_identifiers(std::string_view identifiers_json);

// Returns the time from `created_at` ("YYYY-MM-DD HH:MM:SS", UTC, as SQLite
// stores CURRENT_TIMESTAMP; fractional seconds are ignored) to `now`:
// "3d 4h" from one day on, "5h 12m" from one hour on, else "25m". Empty
// when `created_at` is empty or not in that form; a time in the future
// gives "0m".
std::string format_age(std::string_view created_at,
                       std::chrono::system_clock::time_point now);

// Formats `requests` as the --list table: a header line and one line per
// request with order, certificate, identifiers, age, poll identifier ("-"
// when there is none, so the pass skips the row) and the last error, cut
// to k_error_column_width. Columns are padded to their widest cell.
std::string format_request_table(const std::vector<PendingRequest> &requests,
                                 std::chrono::system_clock::time_point now);

// Formats the --json document of one pass, indented, with a final newline:
// {"requests": [{"order", "certificate", "outcome", "skipped",
// "not_polled", "message"}], "totals": {one count per PassSummary
// counter}, "dry_run", "duration_seconds", "ca_requests",
// "database_transactions", "longest_transaction_seconds", "database_error"
// (the message, or null)}. Bytes that are not valid UTF-8 become U+FFFD.
std::string format_pass_json(const PassSummary &summary,
                             bool dry_run,
                             std::chrono::duration<double> duration);

// The values of one --metrics-file write.
struct PassMetrics {
  const PassSummary &summary;
  std::chrono::duration<double> duration;
  std::chrono::system_clock::time_point finished_at;
  // Certificate requests whose order is still processing after the pass,
  // in the whole database; nullopt leaves the gauge out.
  std::optional<std::size_t> processing_after;
};

// Returns true when the pass counts as a success for
// cert_poll_last_success_timestamp_seconds: no failed or not polled request
// and no database error.
bool pass_succeeded(const PassSummary &summary);

// Returns the value of cert_poll_last_success_timestamp_seconds in the
// text of an earlier metrics file, or nullopt when it has none.
std::optional<std::int64_t> parse_last_success(std::string_view metrics_text);

// Formats the metrics file in Prometheus' text exposition format, with
// # HELP and # TYPE lines. `last_success` is the value for
// cert_poll_last_success_timestamp_seconds; nullopt leaves it out.
std::string format_metrics(const PassMetrics &metrics,
                           std::optional<std::int64_t> last_success);

// Writes the metrics of a pass to `path` so that a reader sees the old file
// or the new one, never a part: it writes `PATH.tmp.<pid>` in the same
// folder, fsyncs it and renames it over `path`. The last success time is
// the pass's end when pass_succeeded(), else the one the old file contains.
// Fails with ErrorKind::usage, naming the path and --metrics-file, when a
// step fails; the temporary file is then removed.
Result<void> write_metrics_file(const std::filesystem::path &path,
                                const PassMetrics &metrics);

} // namespace cert_poll
