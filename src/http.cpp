// SPDX-License-Identifier: Apache-2.0
#include "cert_poll/http.hpp"

#include "cert_poll/version.hpp"

#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <regex>
#include <string>
#include <system_error>
#include <utility>

#include <curl/curl.h>
#include <openssl/x509_vfy.h>
#include <spdlog/spdlog.h>

#include "easy_handle_pool.hpp"
#include "http_retry.hpp"

namespace cert_poll {

namespace {

// Drops the " after N ms" that libcurl puts into many messages. The stored
// error then stays the same from run to run while the cause is the same, so
// a request that keeps failing the same way causes no database write.
std::string without_elapsed_time(std::string text) {
  static const std::regex elapsed(" after [0-9]+ ms");
  return std::regex_replace(text, elapsed, "");
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

Error url_error(std::string_view url, std::string_view reason) {
  return Error{ErrorKind::origin,
               "invalid URL '" + mask_url(url) + "': " + std::string(reason) +
                   ": use an absolute http or https URL"};
}

// Parses with libcurl's own URL parser, so that the origin checked here is
// the one that libcurl connects to when the same handle is passed on.
Result<CurlUrl> parse_url(std::string_view url) {
  if (detail::init_curl_once() != CURLE_OK) {
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
  const std::string scheme = detail::to_lower_ascii(
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
  return Origin{scheme, detail::to_lower_ascii(std::move(host)), port};
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

struct SlistDeleter {
  void operator()(curl_slist *list) const { curl_slist_free_all(list); }
};

// The deadline and stop flag as one get() reads them when it starts a try.
struct TransferSettings {
  std::optional<std::chrono::steady_clock::time_point> deadline;
  const std::atomic<bool> *stop_requested = nullptr;
};

// libcurl checks the host name itself after OpenSSL verified the chain, so
// a verified chain with a failed verification means a host name mismatch.
std::string verification_hint(CURL *handle) {
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

Error redirect_error(CURL *handle, long status, std::string_view masked) {
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
  // Read-only after construction, so every easy handle uses the same list.
  // Declared before the pool, so that it outlives the handles that point
  // to it.
  std::unique_ptr<curl_slist, SlistDeleter> headers;
  std::string user_agent = std::string("cert_poll/") + version;
  detail::EasyHandlePool pool;
  std::atomic<std::uint64_t> requests_sent{0};
  // Guards deadline and stop_requested, which set_deadline and
  // set_stop_flag may change while other threads are in get().
  mutable std::mutex settings_mutex;
  std::optional<std::chrono::steady_clock::time_point> deadline;
  const std::atomic<bool> *stop_requested = nullptr;

  Impl(HttpOptions http_options, BasicCredentials basic_credentials)
      : options(std::move(http_options)),
        credentials(std::move(basic_credentials)),
        headers(curl_slist_append(nullptr, "Accept: application/json")) {}
  Impl(const Impl &) = delete;
  Impl &operator=(const Impl &) = delete;

  TransferSettings settings() const;
  CURLcode configure(detail::EasyHandle &handle,
                     CURLU *url,
                     const Origin &origin,
                     BodySink &sink,
                     const TransferLimit &limit,
                     const TransferSettings &settings);
  Result<TransferLimit> transfer_limit(std::string_view masked,
                                       const TransferSettings &settings) const;
  Result<HttpResponse> perform(detail::EasyHandle &handle,
                               std::string_view url,
                               CURLU *parsed,
                               const Origin &origin);
  Error transfer_error(const detail::EasyHandle &handle,
                       CURLcode code,
                       std::string_view masked,
                       const BodySink &sink,
                       const TransferLimit &limit) const;
  Result<HttpResponse> attempt(std::string_view url,
                               CURLU *parsed,
                               const Origin &origin,
                               std::string &retry_after_value);
};

TransferSettings HttpClient::Impl::settings() const {
  const std::lock_guard lock(settings_mutex);
  return TransferSettings{deadline, stop_requested};
}

CURLcode HttpClient::Impl::configure(detail::EasyHandle &handle,
                                     CURLU *url,
                                     const Origin &origin,
                                     BodySink &sink,
                                     const TransferLimit &limit,
                                     const TransferSettings &settings) {
  // A reset clears the previous request's options but keeps the connection
  // cache, so a keep-alive connection to the CA is reused.
  curl_easy_reset(handle.curl);
  handle.error_buffer[0] = '\0';

  OptionSetter set(handle.curl);
  // Set again after the reset, so that the handle keeps using the pool's
  // share whatever curl_easy_reset clears.
  if (pool.share() != nullptr) {
    set(CURLOPT_SHARE, pool.share());
  }
  set(CURLOPT_CURLU, url);
  set(CURLOPT_HTTPGET, 1L);
  set(CURLOPT_PROTOCOLS_STR, "http,https");
  set(CURLOPT_FOLLOWLOCATION, 0L);
  set(CURLOPT_NOSIGNAL, 1L);
  set(CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(limit.timeout.count()));
  set(CURLOPT_TIMEOUT_MS, static_cast<long>(limit.timeout.count()));
  if (settings.stop_requested != nullptr) {
    set(CURLOPT_XFERINFOFUNCTION, &abort_when_stop_requested);
    set(CURLOPT_XFERINFODATA,
        const_cast<void *>(static_cast<const void *>(settings.stop_requested)));
    set(CURLOPT_NOPROGRESS, 0L);
  }
  set(CURLOPT_USERAGENT, user_agent.c_str());
  set(CURLOPT_HTTPHEADER, headers.get());
  set(CURLOPT_ERRORBUFFER, handle.error_buffer.data());
  set(CURLOPT_WRITEFUNCTION, &write_body);
  set(CURLOPT_WRITEDATA, static_cast<void *>(&sink));
  handle.retry_after.clear();
  set(CURLOPT_HEADERFUNCTION, &detail::read_header);
  set(CURLOPT_HEADERDATA, static_cast<void *>(&handle.retry_after));
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
HttpClient::Impl::transfer_limit(std::string_view masked,
                                 const TransferSettings &settings) const {
  TransferLimit limit{options.timeout, false};
  if (!settings.deadline) {
    return limit;
  }
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(
      *settings.deadline - std::chrono::steady_clock::now());
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

Error HttpClient::Impl::transfer_error(const detail::EasyHandle &handle,
                                       CURLcode code,
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
      handle.error_buffer[0] != '\0' ? handle.error_buffer.data()
                                     : curl_easy_strerror(code));
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
                 "TLS certificate verification of '" + url + "' failed: " +
                     detail + ": " + verification_hint(handle.curl)};
  }
  if (is_tls_error(code)) {
    return Error{ErrorKind::tls,
                 "TLS connection to '" + url + "' failed: " + detail};
  }
  return Error{ErrorKind::transport, "GET '" + url + "' failed: " + detail};
}

Result<HttpResponse> HttpClient::Impl::perform(detail::EasyHandle &handle,
                                               std::string_view url,
                                               CURLU *parsed,
                                               const Origin &origin) {
  const std::string masked = mask_url(url);
  if (headers == nullptr) {
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

  const TransferSettings current = settings();
  if (current.stop_requested != nullptr && current.stop_requested->load()) {
    return make_error(ErrorKind::transport,
                      "GET '" + masked + "' not sent: a stop was requested");
  }
  auto limit = transfer_limit(masked, current);
  if (!limit) {
    return std::unexpected(limit.error());
  }

  BodySink sink{std::string(), options.max_body_bytes, false};
  const CURLcode setup =
      configure(handle, parsed, origin, sink, *limit, current);
  if (setup != CURLE_OK) {
    return make_error(ErrorKind::transport,
                      "cannot set up GET '" + masked +
                          "': " + curl_easy_strerror(setup));
  }

  const CURLcode code = curl_easy_perform(handle.curl);
  // The parsed URL dies with the caller, so the handle must not keep it.
  curl_easy_setopt(handle.curl, CURLOPT_CURLU, nullptr);
  // libcurl resets the request size at the start of each transfer, and it
  // stays 0 when the request never left, e.g. on a refused connection.
  long request_bytes = 0;
  curl_easy_getinfo(handle.curl, CURLINFO_REQUEST_SIZE, &request_bytes);
  if (request_bytes > 0) {
    ++requests_sent;
  }
  if (code != CURLE_OK) {
    return std::unexpected(transfer_error(handle, code, masked, sink, *limit));
  }

  long status = 0;
  curl_easy_getinfo(handle.curl, CURLINFO_RESPONSE_CODE, &status);
  if (status >= 300 && status < 400) {
    return std::unexpected(redirect_error(handle.curl, status, masked));
  }
  if (status < 200 || status >= 300) {
    std::string message =
        "HTTP " + std::to_string(status) + " from '" + masked + "'";
    const std::string snippet = detail::body_snippet(sink.body);
    if (!snippet.empty()) {
      message += ": " + snippet;
    }
    return std::unexpected(
        Error{ErrorKind::http_status, std::move(message), status});
  }
  return HttpResponse{status, std::move(sink.body)};
}

// One GET on an easy handle of the pool, which no other thread uses until
// the GET ends. Stores the response's Retry-After value in
// `retry_after_value`.
Result<HttpResponse> HttpClient::Impl::attempt(std::string_view url,
                                               CURLU *parsed,
                                               const Origin &origin,
                                               std::string &retry_after_value) {
  const detail::EasyHandlePool::Lease lease = pool.take();
  if (lease.get() == nullptr) {
    return make_error(ErrorKind::transport,
                      "libcurl initialisation failed before GET '" +
                          mask_url(url) + "'");
  }
  const auto start = std::chrono::steady_clock::now();
  auto response = perform(*lease.get(), url, parsed, origin);
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
  retry_after_value = lease.get()->retry_after;
  return response;
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
    const std::lock_guard lock(m_impl->settings_mutex);
    m_impl->deadline = deadline;
  }
}

void HttpClient::set_stop_flag(const std::atomic<bool> *stop_requested) {
  if (m_impl) {
    const std::lock_guard lock(m_impl->settings_mutex);
    m_impl->stop_requested = stop_requested;
  }
}

std::uint64_t HttpClient::requests_sent() const {
  return m_impl ? m_impl->requests_sent.load() : 0;
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
        !detail::may_retry_after(response.error().http_status) ||
        retry_after_value.empty()) {
      return response;
    }
    const TransferSettings current = m_impl->settings();
    const detail::RetryContext context{
        m_impl->options, current.deadline, current.stop_requested};
    if (auto final_error = detail::wait_for_retry(
            url, response.error(), retry_after_value, retry, context)) {
      return std::unexpected(std::move(*final_error));
    }
  }
}

} // namespace cert_poll
