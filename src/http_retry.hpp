// SPDX-License-Identifier: Apache-2.0
#pragma once

// Private to src/: HttpClient's handling of Retry-After for 429 and 503,
// and the text helpers that it shares with http.cpp.

#include "cert_poll/error.hpp"
#include "cert_poll/http.hpp"

#include <atomic>
#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace cert_poll::detail {

constexpr std::size_t max_snippet_chars = 200;

std::string to_lower_ascii(std::string text);

// A short, printable excerpt of an error response body for messages.
std::string body_snippet(std::string_view body);

// libcurl's CURLOPT_HEADERFUNCTION: stores the Retry-After value of the last
// response in the std::string that `user_data` points to.
std::size_t
read_header(char *data, std::size_t size, std::size_t count, void *user_data);

// The wait that a Retry-After value requests: delta-seconds or an HTTP-date
// (RFC 9110 section 10.2.3), nullopt when it is neither. A date in the past
// requests no wait.
std::optional<std::chrono::seconds> parse_retry_after(const std::string &text);

bool may_retry_after(long status);

// What a wait for a retry depends on, with the deadline and the stop flag
// as they were when the wait was decided.
struct RetryContext {
  const HttpOptions &options;
  std::optional<std::chrono::steady_clock::time_point> deadline;
  const std::atomic<bool> *stop_requested = nullptr;
};

// Waits as `retry_after_value` requests before retry number `retry` + 1, and
// returns nullopt. Returns the final error instead when the retry is not
// allowed or a stop is requested during the wait.
std::optional<Error> wait_for_retry(std::string_view url,
                                    const Error &error,
                                    const std::string &retry_after_value,
                                    int retry,
                                    const RetryContext &context);

} // namespace cert_poll::detail
