// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "cert_poll/config.hpp"
#include "cert_poll/error.hpp"

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace cert_poll {

// Scheme, host and port of a URL, compared case-insensitively for scheme and
// host, with the default port filled in (443 for https, 80 for http).
struct Origin {
  std::string scheme;
  std::string host; // without brackets for IPv6 literals
  int port = 0;

  // Parses an absolute http or https URL. Userinfo in the URL is rejected.
  static Result<Origin> from_url(std::string_view url);

  bool operator==(const Origin &other) const = default;
  std::string to_string() const; // e.g. "https://ca.example:8443"
};

enum class TlsVerification {
  system_store, // ca_bundle: True
  bundle_file,  // ca_bundle: <path>
  disabled,     // ca_bundle: False
};

struct HttpOptions {
  TlsVerification tls_verification = TlsVerification::system_store;
  std::filesystem::path ca_bundle;          // for TlsVerification::bundle_file
  std::chrono::milliseconds timeout{20000}; // connect and whole transfer
  ProxyList proxies;
  std::size_t max_body_bytes = 4 * 1024 * 1024;
  // A 429 or 503 whose Retry-After requests at most this wait, and at most
  // `timeout`, is retried after that wait, up to max_retries times.
  std::chrono::seconds max_retry_wait{10};
  int max_retries = 2;
};

// User name and password for HTTP basic auth. Never logged.
struct BasicCredentials {
  std::string user;
  std::string password;
};

struct HttpResponse {
  long status = 0;
  std::string body;
};

// A libcurl client that sends basic-auth credentials only to one origin.
//
// get(), set_deadline(), set_stop_flag() and requests_sent() may be called
// from several threads at once, and concurrent gets run their transfers in
// parallel. Each concurrent get() uses its own libcurl easy handle from a
// pool that grows to the largest number of concurrent gets. A handle keeps
// its keep-alive connection for the next get() that takes it, and all
// handles share one DNS cache. Moving or destroying the client while
// another thread is in one of its calls is undefined.
class HttpClient {
public:
  HttpClient(HttpOptions options,
             Origin allowed_origin,
             BasicCredentials credentials);
  HttpClient(HttpClient &&) noexcept;
  HttpClient &operator=(HttpClient &&) noexcept;
  ~HttpClient();

  // Sends a GET to `url` with basic auth and returns a 2xx response.
  // A URL outside the allowed origin fails with ErrorKind::origin before
  // anything is sent. Redirects are not followed (a 3xx is an
  // ErrorKind::http_status error). A body past max_body_bytes fails with
  // ErrorKind::transport. Timeouts give ErrorKind::timeout, certificate
  // problems ErrorKind::tls, other statuses ErrorKind::http_status.
  // A 429 or 503 with a Retry-After (delta-seconds or HTTP-date) within
  // max_retry_wait and timeout is sent again after that wait, at most
  // max_retries times. The error after the last try, or for a longer or
  // invalid Retry-After, names the status and the Retry-After value.
  Result<HttpResponse> get(std::string_view url);

  // The number of HTTP requests that left this client so far, counting each
  // try of a Retry-After retry. A GET that fails before its request is
  // sent (another origin, the deadline, the stop flag, a refused
  // connection, a failed TLS handshake) does not count.
  std::uint64_t requests_sent() const;

  // Makes each later get() end by `deadline`: its connect and transfer
  // timeouts become the smaller of HttpOptions::timeout and the time left,
  // and a get() with no time left fails at once with ErrorKind::timeout.
  // nullopt removes the limit. A try already running keeps its timeout.
  void
  set_deadline(std::optional<std::chrono::steady_clock::time_point> deadline);

  // Makes get() fail with ErrorKind::transport once `*stop_requested` is
  // true: no new transfer starts, and libcurl's progress callback aborts a
  // running one within about a second. nullptr removes the flag. A try
  // that is already running keeps the flag it started with, so the flag
  // must outlive every later get() and every get() running at the change.
  void set_stop_flag(const std::atomic<bool> *stop_requested);

  const Origin &allowed_origin() const { return m_origin; }

private:
  struct Impl;
  std::unique_ptr<Impl> m_impl;
  Origin m_origin;
};

// Returns `url` with userinfo and query string replaced by "***", for logs.
std::string mask_url(std::string_view url);

} // namespace cert_poll
