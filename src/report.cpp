// SPDX-License-Identifier: Apache-2.0
#include "cert_poll/report.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <system_error>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

namespace cert_poll {

namespace {

std::string in_quotes(const std::filesystem::path &path) {
  return "'" + path.string() + "'";
}

std::string errno_text(int error) {
  return std::system_category().message(error);
}

bool is_utf8_continuation(char byte) {
  return (static_cast<unsigned char>(byte) & 0xc0) == 0x80;
}

// The number of UTF-8 code points: the width on a terminal of text without
// wide (CJK) or combining characters.
std::size_t display_width(std::string_view text) {
  return static_cast<std::size_t>(
      std::count_if(text.begin(), text.end(), [](char byte) {
        return !is_utf8_continuation(byte);
      }));
}

// Returns the byte length of the first `count` code points of `text`.
std::size_t prefix_bytes(std::string_view text, std::size_t count) {
  std::size_t seen = 0;
  for (std::size_t at = 0; at < text.size(); ++at) {
    if (!is_utf8_continuation(text[at]) && seen++ == count) {
      return at;
    }
  }
  return text.size();
}

std::string lowercase(std::string_view text) {
  std::string lower(text);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](char c) {
    return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  });
  return lower;
}

// Parses the digits text[at, at + length) into `value`.
bool parse_digits(std::string_view text,
                  std::size_t at,
                  std::size_t length,
                  int &value) {
  const char *first = text.data() + at;
  const char *last = first + length;
  auto [end, error] = std::from_chars(first, last, value);
  return error == std::errc{} && end == last;
}

// Parses "YYYY-MM-DD HH:MM:SS" (or with 'T' between date and time), the
// form of SQLite's CURRENT_TIMESTAMP, as UTC.
std::optional<std::chrono::sys_seconds>
parse_sqlite_time(std::string_view text) {
  if (text.size() < 19 || text[4] != '-' || text[7] != '-' ||
      (text[10] != ' ' && text[10] != 'T') || text[13] != ':' ||
      text[16] != ':') {
    return std::nullopt;
  }
  int year = 0;
  int month = 0;
  int day = 0;
  int hour = 0;
  int minute = 0;
  int second = 0;
  if (!parse_digits(text, 0, 4, year) || !parse_digits(text, 5, 2, month) ||
      !parse_digits(text, 8, 2, day) || !parse_digits(text, 11, 2, hour) ||
      !parse_digits(text, 14, 2, minute) ||
      !parse_digits(text, 17, 2, second)) {
    return std::nullopt;
  }
  std::chrono::year_month_day date{
      std::chrono::year{year},
      std::chrono::month{static_cast<unsigned>(month)},
      std::chrono::day{static_cast<unsigned>(day)}};
  if (!date.ok() || hour > 23 || minute > 59 || second > 60) {
    return std::nullopt;
  }
  return std::chrono::sys_days{date} + std::chrono::hours{hour} +
         std::chrono::minutes{minute} + std::chrono::seconds{second};
}

// Pads each cell but the last of each row to its column's widest cell, with
// two spaces between columns.
std::string format_columns(const std::vector<std::vector<std::string>> &rows) {
  std::vector<std::size_t> widths;
  for (const auto &row : rows) {
    widths.resize(std::max(widths.size(), row.size()), 0);
    for (std::size_t column = 0; column < row.size(); ++column) {
      widths[column] = std::max(widths[column], display_width(row[column]));
    }
  }

  std::string text;
  for (const auto &row : rows) {
    std::string line;
    for (std::size_t column = 0; column < row.size(); ++column) {
      line += row[column];
      if (column + 1 < row.size()) {
        line.append(widths[column] - display_width(row[column]) + 2, ' ');
      }
    }
    // Strips the padding that an empty last cell leaves behind.
    line.erase(line.find_last_not_of(' ') + 1);
    text += line + "\n";
  }
  return text;
}

std::int64_t unix_seconds(std::chrono::system_clock::time_point time) {
  return std::chrono::duration_cast<std::chrono::seconds>(
             time.time_since_epoch())
      .count();
}

// The counters of PassSummary by the name they have in --json and in the
// outcome label of --metrics-file.
std::vector<std::pair<std::string_view, int>>
summary_counts(const PassSummary &summary) {
  return {
      {"issued", summary.issued},
      {"pending", summary.pending},
      {"rejected", summary.rejected},
      {"failed", summary.failed},
      {"skipped", summary.skipped},
      {"not_polled", summary.not_polled},
  };
}

void add_metric_header(std::string &text,
                       std::string_view name,
                       std::string_view help) {
  text += fmt::format("# HELP {} {}\n# TYPE {} gauge\n", name, help, name);
}

std::optional<std::string> read_text(const std::filesystem::path &path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    return std::nullopt;
  }
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

Error metrics_error(const std::filesystem::path &path,
                    const std::string &step,
                    int error) {
  return Error{ErrorKind::usage,
               "failed to write metrics file " + in_quotes(path) + " (" + step +
                   ": " + errno_text(error) +
                   "): check that the folder exists and that this user can "
                   "create files in it, or pass --metrics-file PATH with "
                   "another path"};
}

Result<void> write_all(int fd,
                       std::string_view text,
                       const std::filesystem::path &path,
                       const std::filesystem::path &temporary) {
  while (!text.empty()) {
    ssize_t written = ::write(fd, text.data(), text.size());
    if (written < 0 && errno == EINTR) {
      continue;
    }
    if (written < 0) {
      return std::unexpected(
          metrics_error(path, "writing " + in_quotes(temporary), errno));
    }
    text.remove_prefix(static_cast<std::size_t>(written));
  }
  return {};
}

// Writes `text` to `temporary`, a new file, and flushes it to disk, so that
// the rename that follows never exposes an empty or partial file after a
// crash.
Result<void> write_temporary(const std::filesystem::path &temporary,
                             std::string_view text,
                             const std::filesystem::path &path) {
  // A file left by a killed run whose PID this process now has is removed
  // first. O_EXCL then makes sure that nothing planted at the name in a
  // folder that others can write, such as a symbolic link, is written
  // through.
  ::unlink(temporary.c_str());
  int fd = ::open(temporary.c_str(),
                  O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                  0644);
  if (fd < 0) {
    return std::unexpected(
        metrics_error(path, "creating " + in_quotes(temporary), errno));
  }
  auto written = write_all(fd, text, path, temporary);
  if (written && ::fsync(fd) != 0) {
    written = std::unexpected(
        metrics_error(path, "flushing " + in_quotes(temporary), errno));
  }
  if (::close(fd) != 0 && written) {
    written = std::unexpected(
        metrics_error(path, "closing " + in_quotes(temporary), errno));
  }
  return written;
}

// Flushes the folder entry of a rename to disk. A failure only risks the
// old file coming back after a crash, so it is logged, not returned.
void sync_folder(const std::filesystem::path &path) {
  std::filesystem::path folder = path.parent_path();
  if (folder.empty()) {
    folder = ".";
  }
  int fd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 || ::fsync(fd) != 0) {
    spdlog::debug("failed to flush folder {} of metrics file {} ({})",
                  in_quotes(folder),
                  in_quotes(path),
                  errno_text(errno));
  }
  if (fd >= 0) {
    ::close(fd);
  }
}

double seconds_of(std::chrono::microseconds duration) {
  return std::chrono::duration<double>(duration).count();
}

} // namespace

std::string cut_text(std::string_view text, std::size_t width) {
  std::string clean(text);
  std::replace_if(
      clean.begin(),
      clean.end(),
      [](char c) {
        auto byte = static_cast<unsigned char>(c);
        return byte < 0x20 || byte == 0x7f;
      },
      ' ');
  if (display_width(clean) <= width) {
    return clean;
  }
  constexpr std::string_view ellipsis = "...";
  std::size_t kept_width =
      width > ellipsis.size() ? width - ellipsis.size() : 0;
  clean.resize(prefix_bytes(clean, kept_width));
  return clean + std::string(ellipsis.substr(0, width - kept_width));
}

std::string format_identifiers(std::string_view identifiers_json) {
  if (identifiers_json.empty()) {
    return {};
  }
  auto identifiers = nlohmann::json::parse(identifiers_json, nullptr, false);
  if (!identifiers.is_array()) {
    return std::string(identifiers_json);
  }

  std::string names;
  for (const auto &identifier : identifiers) {
    if (!identifier.is_object() || !identifier.contains("value") ||
        !identifier["value"].is_string()) {
      return std::string(identifiers_json);
    }
    std::string type = identifier.value("type", "");
    std::string name = identifier["value"].get<std::string>();
    if (lowercase(type) != "dns") {
      name = type + ":" + name;
    }
    names += (names.empty() ? "" : ", ") + name;
  }
  return names;
}

std::string format_age(std::string_view created_at,
                       std::chrono::system_clock::time_point now) {
  auto created = parse_sqlite_time(created_at);
  if (!created) {
    return {};
  }
  auto age = std::chrono::duration_cast<std::chrono::minutes>(now - *created);
  std::int64_t minutes = std::max<std::int64_t>(age.count(), 0);
  std::int64_t days = minutes / (24 * 60);
  std::int64_t hours = minutes / 60 % 24;
  if (days > 0) {
    return fmt::format("{}d {}h", days, hours);
  }
  if (hours > 0) {
    return fmt::format("{}h {}m", hours, minutes % 60);
  }
  return fmt::format("{}m", minutes);
}

std::string format_request_table(const std::vector<PendingRequest> &requests,
                                 std::chrono::system_clock::time_point now) {
  std::vector<std::vector<std::string>> rows{{"ORDER",
                                              "CERTIFICATE",
                                              "IDENTIFIERS",
                                              "AGE",
                                              "POLL IDENTIFIER",
                                              "LAST ERROR"}};
  for (const auto &request : requests) {
    rows.push_back({
        request.order_name,
        request.certificate_name,
        format_identifiers(request.identifiers),
        format_age(request.created_at, now),
        request.poll_identifier.empty() ? "-" : request.poll_identifier,
        cut_text(request.error, k_error_column_width),
    });
  }
  return format_columns(rows);
}

std::string format_pass_json(const PassSummary &summary,
                             bool dry_run,
                             std::chrono::duration<double> duration) {
  auto requests = nlohmann::ordered_json::array();
  for (const auto &report : summary.requests) {
    requests.push_back({
        {"order", report.order_name},
        {"certificate", report.certificate_name},
        {"outcome", to_string(report.outcome)},
        {"skipped", report.skipped},
        {"not_polled", report.not_polled},
        {"message", report.message},
    });
  }

  auto totals = nlohmann::ordered_json::object();
  for (const auto &[name, count] : summary_counts(summary)) {
    totals[std::string(name)] = count;
  }

  nlohmann::ordered_json database_error = nullptr;
  if (summary.database_error) {
    database_error = summary.database_error->message;
  }
  // Milliseconds are enough, and "0.25" reads better than 0.2500183.
  double seconds = std::round(duration.count() * 1000.0) / 1000.0;
  // ordered_json keeps the keys in the order documented in the header.
  nlohmann::ordered_json document{
      {"requests", std::move(requests)},
      {"totals", std::move(totals)},
      {"dry_run", dry_run},
      {"duration_seconds", seconds},
      {"ca_requests", summary.ca_requests},
      {"database_transactions", summary.transactions},
      {"longest_transaction_seconds", seconds_of(summary.longest_transaction)},
      {"database_error", std::move(database_error)},
  };
  // A CA's message may carry invalid UTF-8, on which the default handler
  // throws.
  return document.dump(
             2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) +
         "\n";
}

bool pass_succeeded(const PassSummary &summary) {
  return summary.failed == 0 && summary.not_polled == 0 &&
         !summary.database_error;
}

std::optional<std::int64_t> parse_last_success(std::string_view metrics_text) {
  constexpr std::string_view name = "cert_poll_last_success_timestamp_seconds";
  std::istringstream lines{std::string(metrics_text)};
  for (std::string line; std::getline(lines, line);) {
    if (!line.starts_with(name) || line.size() == name.size() ||
        (line[name.size()] != ' ' && line[name.size()] != '\t')) {
      continue;
    }
    std::string_view value(line);
    value.remove_prefix(value.find_first_not_of(" \t", name.size()));
    value = value.substr(0, value.find_first_of(" \t\r"));
    // A value written by another tool may be a float such as 1.7e9.
    double seconds = 0;
    auto [end, error] =
        std::from_chars(value.data(), value.data() + value.size(), seconds);
    if (error != std::errc{} || end != value.data() + value.size() ||
        !std::isfinite(seconds)) {
      return std::nullopt;
    }
    return static_cast<std::int64_t>(seconds);
  }
  return std::nullopt;
}

std::string format_metrics(const PassMetrics &metrics,
                           std::optional<std::int64_t> last_success) {
  std::string text;
  add_metric_header(text,
                    "cert_poll_requests",
                    "Requests in the last pass, by outcome. A skipped or "
                    "not polled request counts only under that outcome.");
  for (const auto &[name, count] : summary_counts(metrics.summary)) {
    text +=
        fmt::format("cert_poll_requests{{outcome=\"{}\"}} {}\n", name, count);
  }
  if (metrics.processing_after) {
    add_metric_header(text,
                      "cert_poll_pending_requests",
                      "Certificate requests whose order is still processing "
                      "after the last pass.");
    text += fmt::format("cert_poll_pending_requests {}\n",
                        *metrics.processing_after);
  }
  add_metric_header(text,
                    "cert_poll_ca_requests",
                    "HTTP requests sent to the CA in the last pass, retries "
                    "included.");
  text +=
      fmt::format("cert_poll_ca_requests {}\n", metrics.summary.ca_requests);
  add_metric_header(text,
                    "cert_poll_database_transactions",
                    "Write transactions committed in the last pass.");
  text += fmt::format("cert_poll_database_transactions {}\n",
                      metrics.summary.transactions);
  add_metric_header(text,
                    "cert_poll_longest_transaction_seconds",
                    "Longest write transaction of the last pass, from taking "
                    "the write lock to COMMIT, in seconds.");
  text += fmt::format("cert_poll_longest_transaction_seconds {:.6f}\n",
                      seconds_of(metrics.summary.longest_transaction));
  add_metric_header(text,
                    "cert_poll_pass_duration_seconds",
                    "Duration of the last pass in seconds.");
  text += fmt::format("cert_poll_pass_duration_seconds {:.3f}\n",
                      metrics.duration.count());
  if (last_success) {
    add_metric_header(text,
                      "cert_poll_last_success_timestamp_seconds",
                      "Unix time of the last pass without failed or not "
                      "polled requests.");
    text += fmt::format("cert_poll_last_success_timestamp_seconds {}\n",
                        *last_success);
  }
  add_metric_header(text,
                    "cert_poll_last_run_timestamp_seconds",
                    "Unix time at which the last pass ended.");
  text += fmt::format("cert_poll_last_run_timestamp_seconds {}\n",
                      unix_seconds(metrics.finished_at));
  return text;
}

Result<void> write_metrics_file(const std::filesystem::path &path,
                                const PassMetrics &metrics) {
  std::optional<std::int64_t> last_success;
  if (pass_succeeded(metrics.summary)) {
    last_success = unix_seconds(metrics.finished_at);
  } else if (auto old_text = read_text(path)) {
    last_success = parse_last_success(*old_text);
  }

  std::filesystem::path temporary =
      path.string() + ".tmp." + std::to_string(::getpid());
  auto written =
      write_temporary(temporary, format_metrics(metrics, last_success), path);
  if (written && ::rename(temporary.c_str(), path.c_str()) != 0) {
    written = std::unexpected(metrics_error(
        path, "renaming " + in_quotes(temporary) + " over it", errno));
  }
  if (!written) {
    ::unlink(temporary.c_str());
    return written;
  }
  sync_folder(path);
  return {};
}

} // namespace cert_poll
