// SPDX-License-Identifier: Apache-2.0
#include "cert_poll/http.hpp"

#include "cert_poll/version.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <charconv>
#include <chrono>
#include <mutex>
#include <optional>
#include <regex>
#include <string>
#include <system_error>
#include <thread>
#include <utility>

#include <curl/curl.h>
#include <openssl/x509_vfy.h>
#include <spdlog/spdlog.h>

namespace cert_poll {

namespace {

// Drops the " after N ms" that libcurl puts into many messages. The stored
// error then stays the same from run to run while the cause is the same, so
// a request that keeps failing the same way causes no database write.
std::string without_elapsed_time(std::string text) {
  static const std::regex elapsed(" after [0-9]+ ms");
  return std::regex_replace(text, elapsed, "");
}

constexpr std::size_t max_snippet_chars = 200;

// curl_global_init is not thread-safe in every libcurl build, so it runs
// once for the process and its result is kept for later calls.
CURLcode init_curl_once() {
  static std::once_flag flag;
  static CURLcode result = CURLE_OK;
  std::call_once(flag, [] { result = curl_global_init(CURL_GLOBAL_DEFAULT); });
  return result;
}

struct CurlUrlDeleter {
  void operator()(CURLU *handle) const { curl_url_cleanup(handle); }
};
using CurlUrl = std::unique_ptr<CURLU, CurlUrlDeleter>;

std::optional<std::string>
url_part(CURLU *handle, CURLUPart part, unsigned int flags = 0) {
  char *text = nullptr;
  if (curl_url_get(handle, part, &text, flags) != CURLUE_OK) {
    return std::nullopt;
  }
  std::string result(text);
  curl_free(text);
  return result;
}

std::string to_lower_ascii(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(), [](char c) {
    return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  });
  return text;
}

Error url_error(std::string_view url, std::string_view reason) {
  return Error{ErrorKind::origin,
               "invalid URL '" + mask_url(url) + "': " + std::string(reason) +
                   ": use an absolute http or https URL"};
}

// Parses with libcurl's own URL parser, so that the origin checked here is
// the one that libcurl connects to when the same handle is passed on.
Result<CurlUrl> parse_url(std::string_view url) {
  if (init_curl_once() != CURLE_OK) {
    return make_error(ErrorKind::transport, "libcurl initialisation failed");
  }
  if (url.find('\0') != std::string_view::npos) {
    return std::unexpected(url_error(url, "contains a NUL character"));
  }
  CurlUrl handle(curl_url());
  if (!handle) {
    return make_error(ErrorKind::transport, "out of memory parsing a URL");
  }
  const std::string text(url);
  const CURLUcode code =
      curl_url_set(handle.get(), CURLUPART_URL, text.c_str(), 0);
  if (code != CURLUE_OK) {
    return std::unexpected(url_error(url, curl_url_strerror(code)));
  }
  return handle;
}

Result<Origin> origin_of(CURLU *handle, std::string_view url) {
  const std::string scheme = to_lower_ascii(
      url_part(handle, CURLUPART_SCHEME).value_or(std::string()));
  if (scheme != "http" && scheme != "https") {
    return make_error(ErrorKind::origin,
                      "unsupported scheme '" + scheme + "' in URL '" +
                          mask_url(url) + "': use http or https");
  }
  if (url_part(handle, CURLUPART_USER) ||
      url_part(handle, CURLUPART_PASSWORD)) {
    return make_error(ErrorKind::origin,
                      "URL '" + mask_url(url) +
                          "' contains user information: remove it, because "
                          "credentials come from api_user and api_password");
  }
  if (url_part(handle, CURLUPART_ZONEID)) {
    return std::unexpected(url_error(url, "IPv6 zone ids are not supported"));
  }

  std::string host = url_part(handle, CURLUPART_HOST).value_or(std::string());
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty()) {
    return std::unexpected(url_error(url, "no host"));
  }

  const std::string port_text =
      url_part(handle, CURLUPART_PORT, CURLU_DEFAULT_PORT)
          .value_or(std::string());
  int port = 0;
  const auto [end, parse_code] = std::from_chars(
      port_text.data(), port_text.data() + port_text.size(), port);
  if (parse_code != std::errc() || end != port_text.data() + port_text.size() ||
      port <= 0 || port > 65535) {
    return std::unexpected(url_error(url, "invalid port '" + port_text + "'"));
  }
  return Origin{scheme, to_lower_ascii(std::move(host)), port};
}

// A short, printable excerpt of an error response body for messages.
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

bool is_tls_error(CURLcode code) {
  switch (code) {
  case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_SSL_CONNECT_ERROR:
  case CURLE_SSL_ENGINE_NOTFOUND:
  case CURLE_SSL_ENGINE_SETFAILED:
  case CURLE_SSL_CERTPROBLEM:
  case CURLE_SSL_CIPHER:
  case CURLE_SSL_ENGINE_INITFAILED:
  case CURLE_SSL_CACERT_BADFILE:
  case CURLE_SSL_SHUTDOWN_FAILED:
  case CURLE_SSL_CRL_BADFILE:
  case CURLE_SSL_ISSUER_ERROR:
  case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
  case CURLE_SSL_INVALIDCERTSTATUS:
  case CURLE_SSL_CLIENTCERT:
  case CURLE_USE_SSL_FAILED:
    return true;
  default:
    return false;
  }
}

// The response body, collected up to a size limit.
struct BodySink {
  std::string body;
  std::size_t max_bytes = 0;
  bool exceeded = false;
};

std::size_t
write_body(char *data, std::size_t size, std::size_t count, void *user_data) {
  auto *sink = static_cast<BodySink *>(user_data);
  const std::size_t bytes = size * count;
  if (bytes > sink->max_bytes - sink->body.size()) {
    sink->exceeded = true;
    return 0; // makes libcurl stop the transfer with CURLE_WRITE_ERROR
  }
  sink->body.append(data, bytes);
  return bytes;
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

// The wait that a Retry-After value requests: delta-seconds or an HTTP-date
// (RFC 9110 section 10.2.3), nullopt when it is neither. A date in the past
// requests no wait.
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

// libcurl's progress callback: a non-zero return aborts the transfer with
// CURLE_ABORTED_BY_CALLBACK. libcurl calls it about once a second while no
// data flows (CURLOPT_XFERINFOFUNCTION(3)), and right after a signal
// interrupts the poll() it waits in.
int abort_when_stop_requested(void *user_data,
                              curl_off_t /*download_total*/,
                              curl_off_t /*downloaded*/,
                              curl_off_t /*upload_total*/,
                              curl_off_t /*uploaded*/) {
  const auto *stop_requested =
      static_cast<const std::atomic<bool> *>(user_data);
  return stop_requested->load() ? 1 : 0;
}

// The timeout of one transfer, and whether the deadline shortened it.
struct TransferLimit {
  std::chrono::milliseconds timeout;
  bool set_by_deadline = false;
};

// The origin of a redirect target, for messages. libcurl resolves a
// relative Location against the request URL, with the request's user name
// and password, so those are dropped first.
std::string redirect_target(const char *location) {
  auto parsed = parse_url(location);
  if (!parsed) {
    return mask_url(location);
  }
  curl_url_set(parsed->get(), CURLUPART_USER, nullptr, 0);
  curl_url_set(parsed->get(), CURLUPART_PASSWORD, nullptr, 0);
  auto target = origin_of(parsed->get(), location);
  return target ? target->to_string() : mask_url(location);
}

// Sets options in order and keeps the first failure.
class OptionSetter {
public:
  explicit OptionSetter(CURL *handle) : m_handle(handle) {}

  template <typename T> void operator()(CURLoption option, T value) {
    if (m_code == CURLE_OK) {
      m_code = curl_easy_setopt(m_handle, option, value);
    }
  }
  CURLcode code() const { return m_code; }

private:
  CURL *m_handle;
  CURLcode m_code = CURLE_OK;
};

} // namespace

Result<Origin> Origin::from_url(std::string_view url) {
  auto handle = parse_url(url);
  if (!handle) {
    return std::unexpected(handle.error());
  }
  return origin_of(handle->get(), url);
}

std::string Origin::to_string() const {
  const bool ipv6 = host.find(':') != std::string::npos;
  const std::string bracketed_host = ipv6 ? "[" + host + "]" : host;
  return scheme + "://" + bracketed_host + ":" + std::to_string(port);
}

std::string mask_url(std::string_view url) {
  std::string masked(url);
  const std::size_t scheme_end = masked.find("://");
  const std::size_t authority_start =
      scheme_end == std::string::npos ? 0 : scheme_end + 3;
  std::size_t authority_end = masked.find_first_of("/?#", authority_start);
  if (authority_end == std::string::npos) {
    authority_end = masked.size();
  }
  const std::string_view authority(masked.data() + authority_start,
                                   authority_end - authority_start);
  const std::size_t at = authority.rfind('@');
  if (at != std::string_view::npos) {
    masked.replace(authority_start, at, "***");
  }

  const std::size_t query_start = masked.find('?');
  if (query_start != std::string::npos) {
    std::size_t query_end = masked.find('#', query_start);
    if (query_end == std::string::npos) {
      query_end = masked.size();
    }
    if (query_end > query_start + 1) {
      masked.replace(query_start + 1, query_end - query_start - 1, "***");
    }
  }
  return masked;
}

struct HttpClient::Impl {
  HttpOptions options;
  BasicCredentials credentials;
  CURL *handle = nullptr;
  curl_slist *headers = nullptr;
  std::array<char, CURL_ERROR_SIZE> error_buffer{};
  std::string user_agent = std::string("cert_poll/") + version;
  std::string retry_after; // of the last response, empty when it had none
  std::optional<std::chrono::steady_clock::time_point> deadline;
  const std::atomic<bool> *stop_requested = nullptr;
  // Serializes get() calls, because a libcurl easy handle must not be used
  // by two threads at once.
  std::mutex mutex;

  Impl(HttpOptions http_options, BasicCredentials basic_credentials)
      : options(std::move(http_options)),
        credentials(std::move(basic_credentials)) {
    if (init_curl_once() == CURLE_OK) {
      handle = curl_easy_init();
    }
    headers = curl_slist_append(nullptr, "Accept: application/json");
  }
  ~Impl() {
    curl_easy_cleanup(handle);
    curl_slist_free_all(headers);
  }
  Impl(const Impl &) = delete;
  Impl &operator=(const Impl &) = delete;

  CURLcode configure(CURLU *url,
                     const Origin &origin,
                     BodySink &sink,
                     const TransferLimit &limit);
  Result<TransferLimit> transfer_limit(std::string_view masked) const;
  Result<HttpResponse>
  perform(std::string_view url, CURLU *parsed, const Origin &origin);
  Error transfer_error(CURLcode code,
                       std::string_view masked,
                       const BodySink &sink,
                       const TransferLimit &limit) const;
  Error redirect_error(long status, std::string_view masked) const;
  std::string verification_hint() const;
  Result<HttpResponse> attempt(std::string_view url,
                               CURLU *parsed,
                               const Origin &origin,
                               std::string &retry_after_value);
  std::optional<Error> wait_for_retry(std::string_view url,
                                      const Error &error,
                                      const std::string &retry_after_value,
                                      int retry);
  bool ends_before_deadline(std::chrono::seconds wait);
  bool sleep_unless_stopped(std::chrono::seconds wait);
  std::optional<Error> retry_limit_error(const Error &error,
                                         const std::string &retry_after_value,
                                         int retry) const;
};

// libcurl checks the host name itself after OpenSSL verified the chain, so
// a verified chain with a failed verification means a host name mismatch.
std::string HttpClient::Impl::verification_hint() const {
  long result = X509_V_OK;
  curl_easy_getinfo(handle, CURLINFO_SSL_VERIFYRESULT, &result);
  switch (result) {
  case X509_V_OK:
  case X509_V_ERR_HOSTNAME_MISMATCH:
  case X509_V_ERR_IP_ADDRESS_MISMATCH:
    return "use an api_host whose host name the CA's server certificate "
           "contains";
  case X509_V_ERR_CERT_HAS_EXPIRED:
  case X509_V_ERR_CERT_NOT_YET_VALID:
    return "check this machine's clock, or have the CA's server certificate "
           "renewed";
  default:
    return "check the CA bundle";
  }
}

CURLcode HttpClient::Impl::configure(CURLU *url,
                                     const Origin &origin,
                                     BodySink &sink,
                                     const TransferLimit &limit) {
  // A reset clears the previous request's options but keeps the connection
  // cache, so a keep-alive connection to the CA is reused.
  curl_easy_reset(handle);
  error_buffer[0] = '\0';

  OptionSetter set(handle);
  set(CURLOPT_CURLU, url);
  set(CURLOPT_HTTPGET, 1L);
  set(CURLOPT_PROTOCOLS_STR, "http,https");
  set(CURLOPT_FOLLOWLOCATION, 0L);
  set(CURLOPT_NOSIGNAL, 1L);
  set(CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(limit.timeout.count()));
  set(CURLOPT_TIMEOUT_MS, static_cast<long>(limit.timeout.count()));
  if (stop_requested != nullptr) {
    set(CURLOPT_XFERINFOFUNCTION, &abort_when_stop_requested);
    set(CURLOPT_XFERINFODATA,
        const_cast<void *>(static_cast<const void *>(stop_requested)));
    set(CURLOPT_NOPROGRESS, 0L);
  }
  set(CURLOPT_USERAGENT, user_agent.c_str());
  set(CURLOPT_HTTPHEADER, headers);
  set(CURLOPT_ERRORBUFFER, error_buffer.data());
  set(CURLOPT_WRITEFUNCTION, &write_body);
  set(CURLOPT_WRITEDATA, static_cast<void *>(&sink));
  retry_after.clear();
  set(CURLOPT_HEADERFUNCTION, &read_header);
  set(CURLOPT_HEADERDATA, static_cast<void *>(&retry_after));
  // Fails early when Content-Length announces too much. Chunked bodies are
  // cut off by write_body instead.
  set(CURLOPT_MAXFILESIZE_LARGE,
      static_cast<curl_off_t>(options.max_body_bytes));

  switch (options.tls_verification) {
  case TlsVerification::system_store:
    break;
  case TlsVerification::bundle_file:
    set(CURLOPT_CAINFO, options.ca_bundle.c_str());
    break;
  case TlsVerification::disabled:
    set(CURLOPT_SSL_VERIFYPEER, 0L);
    set(CURLOPT_SSL_VERIFYHOST, 0L);
    break;
  }

  // A proxy_server_list match is used explicitly. Otherwise libcurl's
  // default stays, which honours http_proxy, https_proxy and no_proxy from
  // the environment as Python requests (acme2certifier's client) does.
  const std::optional<std::string> proxy =
      options.proxies.proxy_for(origin.host);
  if (proxy) {
    set(CURLOPT_PROXY, proxy->c_str());
  }

  // Credentials last: the caller has checked `origin` against the allowed
  // one before calling configure.
  set(CURLOPT_HTTPAUTH, static_cast<long>(CURLAUTH_BASIC));
  set(CURLOPT_USERNAME, credentials.user.c_str());
  set(CURLOPT_PASSWORD, credentials.password.c_str());
  return set.code();
}

// Returns the timeout for the next transfer: HttpOptions::timeout, cut to
// the time left before the deadline. Rounding up keeps libcurl from giving
// up before the deadline, and from getting 0, which it takes as no timeout.
Result<TransferLimit>
HttpClient::Impl::transfer_limit(std::string_view masked) const {
  TransferLimit limit{options.timeout, false};
  if (!deadline) {
    return limit;
  }
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(
      *deadline - std::chrono::steady_clock::now());
  if (left <= std::chrono::milliseconds::zero()) {
    return make_error(ErrorKind::timeout,
                      "GET '" + std::string(masked) +
                          "' not sent: deadline reached");
  }
  if (left < limit.timeout) {
    limit = TransferLimit{left, true};
  }
  return limit;
}

Error HttpClient::Impl::transfer_error(CURLcode code,
                                       std::string_view masked,
                                       const BodySink &sink,
                                       const TransferLimit &limit) const {
  const std::string url(masked);
  if (sink.exceeded || code == CURLE_FILESIZE_EXCEEDED) {
    return Error{ErrorKind::transport,
                 "response from '" + url + "' exceeds " +
                     std::to_string(options.max_body_bytes) + " bytes"};
  }
  const std::string detail = without_elapsed_time(
      error_buffer[0] != '\0' ? error_buffer.data() : curl_easy_strerror(code));
  if (code == CURLE_ABORTED_BY_CALLBACK) {
    return Error{ErrorKind::transport,
                 "GET '" + url + "' aborted: a stop was requested"};
  }
  if (code == CURLE_OPERATION_TIMEDOUT && limit.set_by_deadline) {
    return Error{ErrorKind::timeout,
                 "GET '" + url + "' timed out: deadline reached"};
  }
  if (code == CURLE_OPERATION_TIMEDOUT) {
    // libcurl's own text only repeats the limit, so it is left out.
    return Error{ErrorKind::timeout,
                 "GET '" + url + "' timed out after " +
                     std::to_string(options.timeout.count()) + " ms"};
  }
  if (code == CURLE_PEER_FAILED_VERIFICATION) {
    return Error{ErrorKind::tls,
                 "TLS certificate verification of '" + url +
                     "' failed: " + detail + ": " + verification_hint()};
  }
  if (is_tls_error(code)) {
    return Error{ErrorKind::tls,
                 "TLS connection to '" + url + "' failed: " + detail};
  }
  return Error{ErrorKind::transport, "GET '" + url + "' failed: " + detail};
}

Error HttpClient::Impl::redirect_error(long status,
                                       std::string_view masked) const {
  std::string message =
      "HTTP " + std::to_string(status) + " from '" + std::string(masked) + "'";
  char *location = nullptr;
  curl_easy_getinfo(handle, CURLINFO_REDIRECT_URL, &location);
  if (location != nullptr) {
    message += " redirects to '" + redirect_target(location) + "'";
  }
  message += ": redirects are not followed, so configure the final URL";
  return Error{ErrorKind::http_status, std::move(message), status};
}

Result<HttpResponse> HttpClient::Impl::perform(std::string_view url,
                                               CURLU *parsed,
                                               const Origin &origin) {
  const std::string masked = mask_url(url);
  if (handle == nullptr || headers == nullptr) {
    return make_error(ErrorKind::transport,
                      "libcurl initialisation failed before GET '" + masked +
                          "'");
  }
  if (options.tls_verification == TlsVerification::bundle_file) {
    std::error_code ignored;
    if (!std::filesystem::exists(options.ca_bundle, ignored)) {
      return make_error(ErrorKind::config,
                        "CA bundle '" + options.ca_bundle.string() +
                            "' does not exist: set ca_bundle to a PEM file");
    }
  }

  if (stop_requested != nullptr && stop_requested->load()) {
    return make_error(ErrorKind::transport,
                      "GET '" + masked + "' not sent: a stop was requested");
  }
  auto limit = transfer_limit(masked);
  if (!limit) {
    return std::unexpected(limit.error());
  }

  BodySink sink{std::string(), options.max_body_bytes, false};
  const CURLcode setup = configure(parsed, origin, sink, *limit);
  if (setup != CURLE_OK) {
    return make_error(ErrorKind::transport,
                      "cannot set up GET '" + masked +
                          "': " + curl_easy_strerror(setup));
  }

  const CURLcode code = curl_easy_perform(handle);
  // The parsed URL dies with the caller, so the handle must not keep it.
  curl_easy_setopt(handle, CURLOPT_CURLU, nullptr);
  if (code != CURLE_OK) {
    return std::unexpected(transfer_error(code, masked, sink, *limit));
  }

  long status = 0;
  curl_easy_getinfo(handle, CURLINFO_RESPONSE_CODE, &status);
  if (status >= 300 && status < 400) {
    return std::unexpected(redirect_error(status, masked));
  }
  if (status < 200 || status >= 300) {
    std::string message =
        "HTTP " + std::to_string(status) + " from '" + masked + "'";
    const std::string snippet = body_snippet(sink.body);
    if (!snippet.empty()) {
      message += ": " + snippet;
    }
    return std::unexpected(
        Error{ErrorKind::http_status, std::move(message), status});
  }
  return HttpResponse{status, std::move(sink.body)};
}

// One GET under the handle's lock. Stores the response's Retry-After value,
// which the next request on the handle overwrites, in `retry_after_value`.
Result<HttpResponse> HttpClient::Impl::attempt(std::string_view url,
                                               CURLU *parsed,
                                               const Origin &origin,
                                               std::string &retry_after_value) {
  const std::lock_guard lock(mutex);
  const auto start = std::chrono::steady_clock::now();
  auto response = perform(url, parsed, origin);
  const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - start);
  if (response) {
    spdlog::debug("GET {} -> HTTP {} in {} ms",
                  mask_url(url),
                  response->status,
                  elapsed.count());
  } else {
    spdlog::debug("GET {} failed in {} ms: {}",
                  mask_url(url),
                  elapsed.count(),
                  response.error().message);
  }
  retry_after_value = retry_after;
  return response;
}

// The final error when a 429 or 503 with `retry_after_value` is not retried
// again, nullopt when it is.
std::optional<Error> HttpClient::Impl::retry_limit_error(
    const Error &error, const std::string &retry_after_value, int retry) const {
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

bool HttpClient::Impl::ends_before_deadline(std::chrono::seconds wait) {
  const std::lock_guard lock(mutex);
  return !deadline || std::chrono::steady_clock::now() + wait < *deadline;
}

// Sleeps `wait` unless a stop is requested during it. Returns whether it
// slept the whole wait.
bool HttpClient::Impl::sleep_unless_stopped(std::chrono::seconds wait) {
  const std::atomic<bool> *stop = nullptr;
  {
    const std::lock_guard lock(mutex);
    stop = stop_requested;
  }
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

// Waits as `retry_after_value` requests before retry number `retry` + 1, and
// returns nullopt. Returns the final error instead when the retry is not
// allowed or a stop is requested during the wait.
std::optional<Error>
HttpClient::Impl::wait_for_retry(std::string_view url,
                                 const Error &error,
                                 const std::string &retry_after_value,
                                 int retry) {
  if (auto final_error = retry_limit_error(error, retry_after_value, retry)) {
    return final_error;
  }
  const std::chrono::seconds wait = *parse_retry_after(retry_after_value);
  const std::string quoted = "'" + body_snippet(retry_after_value) + "'";
  if (!ends_before_deadline(wait)) {
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
               options.max_retries);
  if (!sleep_unless_stopped(wait)) {
    Error final_error = error;
    final_error.message +=
        ": a stop was requested during the wait that Retry-After " + quoted +
        " requests";
    return final_error;
  }
  return std::nullopt;
}

HttpClient::HttpClient(HttpOptions options,
                       Origin allowed_origin,
                       BasicCredentials credentials)
    : m_impl(
          std::make_unique<Impl>(std::move(options), std::move(credentials))),
      m_origin(std::move(allowed_origin)) {}

void HttpClient::set_deadline(
    std::optional<std::chrono::steady_clock::time_point> deadline) {
  if (m_impl) {
    const std::lock_guard lock(m_impl->mutex);
    m_impl->deadline = deadline;
  }
}

void HttpClient::set_stop_flag(const std::atomic<bool> *stop_requested) {
  if (m_impl) {
    const std::lock_guard lock(m_impl->mutex);
    m_impl->stop_requested = stop_requested;
  }
}

HttpClient::HttpClient(HttpClient &&) noexcept = default;
HttpClient &HttpClient::operator=(HttpClient &&) noexcept = default;
HttpClient::~HttpClient() = default;

Result<HttpResponse> HttpClient::get(std::string_view url) {
  if (!m_impl) {
    return make_error(ErrorKind::transport, "HTTP client used after a move");
  }
  auto parsed = parse_url(url);
  if (!parsed) {
    return std::unexpected(parsed.error());
  }
  auto origin = origin_of(parsed->get(), url);
  if (!origin) {
    return std::unexpected(origin.error());
  }
  // Checked before any option is set, so that no byte and no credential
  // leaves for another origin.
  if (*origin != m_origin) {
    return make_error(ErrorKind::origin,
                      "URL '" + mask_url(url) + "' is outside api_host '" +
                          m_origin.to_string() +
                          "': credentials are only sent to api_host");
  }

  // Bounded by max_retries, and each wait by max_retry_wait and timeout.
  for (int retry = 0;; ++retry) {
    std::string retry_after_value;
    auto response =
        m_impl->attempt(url, parsed->get(), *origin, retry_after_value);
    if (response || response.error().kind != ErrorKind::http_status ||
        !may_retry_after(response.error().http_status) ||
        retry_after_value.empty()) {
      return response;
    }
    if (auto final_error = m_impl->wait_for_retry(
            url, response.error(), retry_after_value, retry)) {
      return std::unexpected(std::move(*final_error));
    }
  }
}

} // namespace cert_poll
