// SPDX-License-Identifier: Apache-2.0
#include "http_retry.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <ctime>
#include <system_error>
#include <thread>

#include <curl/curl.h>
#include <spdlog/spdlog.h>

namespace cert_poll::detail {

std::string to_lower_ascii(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(), [](char c) {
    return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  });
  return text;
}

std::string body_snippet(std::string_view body) {
  std::string snippet;
  for (const char c : body) {
    const auto byte = static_cast<unsigned char>(c);
    const bool printable = byte >= 0x20 && byte < 0x7f;
    if (!printable || c == ' ') {
      if (!snippet.empty() && snippet.back() != ' ') {
        snippet.push_back(' ');
      }
      continue;
    }
    if (snippet.size() == max_snippet_chars) {
      snippet += "...";
      break;
    }
    snippet.push_back(c);
  }
  while (!snippet.empty() && snippet.back() == ' ') {
    snippet.pop_back();
  }
  return snippet;
}

// Keeps the Retry-After value of the last response. libcurl passes one
// header line per call, and the headers of each response start with its
// status line, which clears the value of an earlier response.
std::size_t
read_header(char *data, std::size_t size, std::size_t count, void *user_data) {
  auto *retry_after = static_cast<std::string *>(user_data);
  const std::size_t bytes = size * count;
  const std::string_view line(data, bytes);
  if (line.starts_with("HTTP/")) {
    retry_after->clear();
    return bytes;
  }
  constexpr std::string_view name = "retry-after:";
  if (line.size() < name.size() ||
      to_lower_ascii(std::string(line.substr(0, name.size()))) != name) {
    return bytes;
  }
  std::string_view value = line.substr(name.size());
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) {
    value.remove_prefix(1);
  }
  while (!value.empty() &&
         std::isspace(static_cast<unsigned char>(value.back())) != 0) {
    value.remove_suffix(1);
  }
  *retry_after = std::string(value.substr(0, max_snippet_chars));
  return bytes;
}

std::optional<std::chrono::seconds> parse_retry_after(const std::string &text) {
  // Longer waits are cut to this, which no retry allows anyway, so that
  // converting them to milliseconds cannot overflow.
  constexpr long long max_seconds = 365LL * 24 * 3600;
  long long seconds = 0;
  const char *end = text.data() + text.size();
  const auto [stop, code] = std::from_chars(text.data(), end, seconds);
  const bool digits_only = !text.empty() && stop == end && text[0] != '-';
  if (digits_only && code == std::errc::result_out_of_range) {
    return std::chrono::seconds(max_seconds);
  }
  if (digits_only && code == std::errc()) {
    return std::chrono::seconds(std::min(seconds, max_seconds));
  }
  const time_t date = curl_getdate(text.c_str(), nullptr);
  if (date == -1) {
    return std::nullopt;
  }
  const auto now =
      std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  return std::chrono::seconds(
      std::clamp<long long>(date - now, 0, max_seconds));
}

bool may_retry_after(long status) {
  return status == 429 || status == 503;
}

namespace {

// The final error when a 429 or 503 with `retry_after_value` is not retried
// again, nullopt when it is.
std::optional<Error> retry_limit_error(const Error &error,
                                       const std::string &retry_after_value,
                                       int retry,
                                       const HttpOptions &options) {
  const std::string quoted = "'" + body_snippet(retry_after_value) + "'";
  const std::optional<std::chrono::seconds> wait =
      parse_retry_after(retry_after_value);
  const std::chrono::milliseconds limit = std::min<std::chrono::milliseconds>(
      options.max_retry_wait, options.timeout);
  Error final_error = error;
  if (!wait) {
    final_error.message += ": Retry-After " + quoted +
                           " is neither delta-seconds nor an HTTP-date, so the "
                           "request is polled again on the next run";
    return final_error;
  }
  if (*wait > limit) {
    final_error.message +=
        ": Retry-After " + quoted + " requests a wait longer " + "than the " +
        std::to_string(limit.count()) +
        " ms that a run waits, so the request is polled again "
        "on the next run";
    return final_error;
  }
  if (retry >= options.max_retries) {
    final_error.message += ": still HTTP " + std::to_string(error.http_status) +
                           " after " + std::to_string(retry) +
                           " retries with the wait that Retry-After " + quoted +
                           " requests, so the request is polled again on the "
                           "next run";
    return final_error;
  }
  return std::nullopt;
}

// Sleeps `wait` unless a stop is requested during it. Returns whether it
// slept the whole wait.
bool sleep_unless_stopped(std::chrono::seconds wait,
                          const std::atomic<bool> *stop) {
  const auto end = std::chrono::steady_clock::now() + wait;
  // Ends at `end`, and checks the stop flag every 50 ms.
  constexpr std::chrono::milliseconds step{50};
  while (std::chrono::steady_clock::now() < end) {
    if (stop != nullptr && stop->load()) {
      return false;
    }
    const auto left = end - std::chrono::steady_clock::now();
    std::this_thread::sleep_for(
        std::min<std::chrono::steady_clock::duration>(step, left));
  }
  return stop == nullptr || !stop->load();
}

} // namespace

std::optional<Error> wait_for_retry(std::string_view url,
                                    const Error &error,
                                    const std::string &retry_after_value,
                                    int retry,
                                    const RetryContext &context) {
  if (auto final_error =
          retry_limit_error(error, retry_after_value, retry, context.options)) {
    return final_error;
  }
  const std::chrono::seconds wait = *parse_retry_after(retry_after_value);
  const std::string quoted = "'" + body_snippet(retry_after_value) + "'";
  const bool ends_before_deadline =
      !context.deadline ||
      std::chrono::steady_clock::now() + wait < *context.deadline;
  if (!ends_before_deadline) {
    Error final_error = error;
    final_error.message += ": Retry-After " + quoted +
                           " requests a wait past the run's deadline, so the "
                           "request is polled again on the next run";
    return final_error;
  }
  spdlog::info("GET {} returned HTTP {} with Retry-After {}: retrying in "
               "{} s, retry {} of {}",
               mask_url(url),
               error.http_status,
               quoted,
               wait.count(),
               retry + 1,
               context.options.max_retries);
  if (!sleep_unless_stopped(wait, context.stop_requested)) {
    Error final_error = error;
    final_error.message +=
        ": a stop was requested during the wait that Retry-After " + quoted +
        " requests";
    return final_error;
  }
  return std::nullopt;
}

} // namespace cert_poll::detail
