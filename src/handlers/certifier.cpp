// SPDX-License-Identifier: Apache-2.0
#include "cert_poll/handlers/certifier.hpp"

#include "cert_poll/x509.hpp"

#include <algorithm>
#include <cctype>
#include <exception>
#include <filesystem>
#include <fstream>
#include <future>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

namespace cert_poll {

namespace {

using nlohmann::json;

constexpr std::string_view section = "CAhandler";
constexpr int default_request_timeout_seconds = 20;
constexpr std::size_t max_quoted_value_chars = 64;
// Certifier's documents nest a few levels. The limit keeps a hostile body
// from building a deep tree, whose recursive use (comparison, dump) could
// overflow the stack.
constexpr int max_json_depth = 64;

Error config_error(std::string message) {
  return Error{ErrorKind::config, std::move(message)};
}

// The value of `key`, or nullopt when it is missing or empty.
std::optional<std::string> non_empty_value(const IniFile &ini,
                                           std::string_view key) {
  std::optional<std::string> value = ini.value(section, key);
  if (value && value->empty()) {
    return std::nullopt;
  }
  return value;
}

// Reads `key`, else the environment variable that `key`_variable names.
// Messages name the variable, never its value.
Result<std::string>
read_value_or_variable(const IniFile &ini,
                       const std::string &key,
                       const EnvironmentLookup &environment) {
  if (auto value = non_empty_value(ini, key)) {
    return *value;
  }
  const std::string variable_key = key + "_variable";
  const std::optional<std::string> variable =
      non_empty_value(ini, variable_key);
  if (!variable) {
    return std::unexpected(config_error("missing '" + key +
                                        "' in [CAhandler]: set '" + key +
                                        "' or '" + variable_key + "'"));
  }
  const std::optional<std::string> value = environment(*variable);
  if (!value || value->empty()) {
    return std::unexpected(config_error(
        "environment variable '" + *variable + "' named by '" + variable_key +
        "' in [CAhandler] is not set or empty: export it or set '" + key +
        "'"));
  }
  return *value;
}

Result<std::string> read_api_host(const IniFile &ini) {
  std::optional<std::string> api_host = non_empty_value(ini, "api_host");
  if (!api_host) {
    return std::unexpected(config_error(
        "missing 'api_host' in [CAhandler]: set it to the base URL of the "
        "Certifier REST API"));
  }
  while (!api_host->empty() && api_host->back() == '/') {
    api_host->pop_back();
  }
  auto origin = Origin::from_url(*api_host);
  if (!origin) {
    return std::unexpected(config_error("invalid 'api_host' in [CAhandler]: " +
                                        origin.error().message));
  }
  return *api_host;
}

// Checks that the ca_bundle path is a file with at least one PEM
// certificate, so that a wrong path fails at start and not on every request.
Result<void> check_ca_bundle(const std::string &path) {
  std::error_code error;
  if (!std::filesystem::exists(path, error)) {
    return std::unexpected(
        config_error("CA bundle '" + path +
                     "' from 'ca_bundle' in [CAhandler] does "
                     "not exist: set it to a PEM file, True or False"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!std::filesystem::is_regular_file(path, error) || !in) {
    return std::unexpected(
        config_error("CA bundle '" + path +
                     "' from 'ca_bundle' in [CAhandler] is not a readable "
                     "file: set it to a PEM file, True or False"));
  }
  std::ostringstream text;
  text << in.rdbuf();
  auto certificates = x509::parse_pem_chain(text.str());
  if (!certificates) {
    // The parse error is left out because it quotes the file, which may be
    // a private key put there by mistake.
    return std::unexpected(
        config_error("CA bundle '" + path +
                     "' from 'ca_bundle' in [CAhandler] contains no valid "
                     "PEM certificate: set it to a PEM file with the CA "
                     "certificates, True or False"));
  }
  return {};
}

Result<HttpOptions> read_http_options(const IniFile &ini,
                                      const ProxyList &proxies) {
  HttpOptions options;
  options.proxies = proxies;

  const std::optional<std::string> bundle = non_empty_value(ini, "ca_bundle");
  const std::optional<bool> bundle_flag =
      bundle ? parse_bool(*bundle) : std::optional<bool>(true);
  if (bundle_flag) {
    options.tls_verification = *bundle_flag ? TlsVerification::system_store
                                            : TlsVerification::disabled;
  } else {
    auto checked = check_ca_bundle(*bundle);
    if (!checked) {
      return std::unexpected(checked.error());
    }
    options.tls_verification = TlsVerification::bundle_file;
    options.ca_bundle = *bundle;
  }

  int seconds = default_request_timeout_seconds;
  if (auto text = ini.value(section, "request_timeout")) {
    std::optional<int> parsed =
        parse_whole_number(*text, 1, std::numeric_limits<int>::max());
    if (!parsed) {
      return std::unexpected(
          config_error("invalid 'request_timeout' '" + *text +
                       "' in [CAhandler]: set it "
                       "to a positive whole number of seconds"));
    }
    seconds = *parsed;
  }
  options.timeout = std::chrono::seconds(seconds);
  return options;
}

// ---- poll helpers ----

// A value from a response, cut short and made printable for a message.
std::string quote_value(std::string_view value) {
  std::string text;
  for (const char c : value.substr(0, max_quoted_value_chars)) {
    const auto byte = static_cast<unsigned char>(c);
    text.push_back(byte >= 0x20 && byte < 0x7f ? c : '?');
  }
  if (value.size() > max_quoted_value_chars) {
    text += "...";
  }
  return "'" + text + "'";
}

std::string to_lower(std::string_view text) {
  std::string lower(text);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](char c) {
    return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  });
  return lower;
}

PollResult make_result(PollStatus status, std::string message) {
  PollResult result;
  result.status = status;
  result.message = std::move(message);
  return result;
}

PollResult failed(std::string message) {
  return make_result(PollStatus::failed, std::move(message));
}

Error protocol_error(std::string message) {
  return Error{ErrorKind::protocol, std::move(message)};
}

Error missing_field(std::string_view field, std::string_view url) {
  return protocol_error("response from '" + mask_url(url) + "' has no '" +
                        std::string(field) + "' field");
}

// The scheme and authority of `api_host`, e.g. "https://ca.example:8443".
std::string base_of(std::string_view api_host) {
  const std::size_t authority_start = api_host.find("://");
  if (authority_start == std::string_view::npos) {
    return std::string(api_host);
  }
  const std::size_t path_start = api_host.find('/', authority_start + 3);
  return std::string(api_host.substr(0, path_start));
}

// Resolves a link: a path starting with a single '/' is taken relative to
// api_host's origin, anything else must be an absolute URL. HttpClient
// rejects links on other origins.
std::string resolve_link(std::string_view api_host, std::string_view link) {
  if (link.starts_with('/') && !link.starts_with("//")) {
    return base_of(api_host) + std::string(link);
  }
  return std::string(link);
}

// nlohmann's parse_error text quotes the bytes last read, which may be
// invalid UTF-8, so non-printable bytes become '?'.
std::string printable(std::string_view text) {
  std::string result;
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    result.push_back(byte >= 0x20 && byte < 0x7f ? c : '?');
  }
  return result;
}

// Parses `body`, rejecting invalid UTF-8 and nesting deeper than
// max_json_depth with ErrorKind::parse.
Result<json> parse_json(const std::string &body, std::string_view url) {
  bool too_deep = false;
  // nlohmann/json 3.11 parses iteratively. The callback drops each container
  // past the limit, so no deep tree is built.
  const json::parser_callback_t limit_depth =
      [&too_deep](int depth, json::parse_event_t event, json &) {
        const bool opens = event == json::parse_event_t::object_start ||
                           event == json::parse_event_t::array_start;
        if (opens && depth >= max_json_depth) {
          too_deep = true;
          return false;
        }
        return true;
      };
  json document;
  try {
    document = json::parse(body, limit_depth);
  } catch (const json::parse_error &error) {
    return make_error(ErrorKind::parse,
                      "invalid JSON from '" + mask_url(url) +
                          "': " + printable(error.what()));
  }
  if (too_deep) {
    return make_error(ErrorKind::parse,
                      "invalid JSON from '" + mask_url(url) +
                          "': nested deeper than " +
                          std::to_string(max_json_depth) + " levels");
  }
  return document;
}

Result<json> fetch_json(HttpClient &client, const std::string &url) {
  auto response = client.get(url);
  if (!response) {
    Error error = response.error();
    if (error.kind == ErrorKind::http_status &&
        (error.http_status == 401 || error.http_status == 403)) {
      error.message += ": check api_user and api_password in [CAhandler]";
    }
    if (error.kind == ErrorKind::timeout) {
      error.message += ": check that the CA is up, or raise request_timeout "
                       "in [CAhandler]";
    }
    return std::unexpected(std::move(error));
  }
  auto document = parse_json(response->body, url);
  if (!document) {
    return std::unexpected(document.error());
  }
  if (!document->is_object()) {
    return make_error(ErrorKind::protocol,
                      "response from '" + mask_url(url) +
                          "' is not a JSON object");
  }
  return document;
}

// The string member `field` of `object`, or nullopt when it is absent or
// null.
Result<std::optional<std::string>> optional_string(const json &object,
                                                   const std::string &field,
                                                   std::string_view url) {
  const auto member = object.find(field);
  if (member == object.end() || member->is_null()) {
    return std::optional<std::string>();
  }
  if (!member->is_string()) {
    return std::unexpected(protocol_error("field '" + field +
                                          "' in response from '" +
                                          mask_url(url) + "' is not a string"));
  }
  return std::optional<std::string>(member->get<std::string>());
}

Result<std::string> required_string(const json &object,
                                    const std::string &field,
                                    std::string_view url) {
  auto value = optional_string(object, field, url);
  if (!value) {
    return std::unexpected(value.error());
  }
  if (!*value) {
    return std::unexpected(missing_field(field, url));
  }
  return std::move(**value);
}

// One certificate resource: the DER and the link to its issuer, if any.
struct CertificateResource {
  x509::Bytes der;
  std::optional<std::string> issuer_link;
};

Result<CertificateResource> fetch_certificate(HttpClient &client,
                                              const std::string &url) {
  auto document = fetch_json(client, url);
  if (!document) {
    return std::unexpected(document.error());
  }
  auto encoded = required_string(*document, "certificateBase64", url);
  if (!encoded) {
    return std::unexpected(encoded.error());
  }
  auto der = x509::decode_base64(*encoded);
  if (!der) {
    return make_error(ErrorKind::parse,
                      "invalid 'certificateBase64' in response from '" +
                          mask_url(url) + "': " + der.error().message);
  }
  if (der->empty()) {
    return make_error(ErrorKind::parse,
                      "empty 'certificateBase64' in response from '" +
                          mask_url(url) + "'");
  }

  auto issuer = optional_string(*document, "issuer", url);
  if (issuer && !*issuer) {
    issuer = optional_string(*document, "issuerCa", url);
  }
  if (!issuer) {
    return std::unexpected(issuer.error());
  }
  return CertificateResource{std::move(*der), std::move(*issuer)};
}

// The `certificates.active` link of a CA resource.
Result<std::string> fetch_active_certificate_link(HttpClient &client,
                                                  const std::string &url) {
  auto document = fetch_json(client, url);
  if (!document) {
    return std::unexpected(document.error());
  }
  const auto certificates = document->find("certificates");
  if (certificates == document->end() || !certificates->is_object()) {
    return std::unexpected(missing_field("certificates.active", url));
  }
  auto active = optional_string(*certificates, "active", url);
  if (!active) {
    return std::unexpected(active.error());
  }
  if (!*active) {
    return std::unexpected(missing_field("certificates.active", url));
  }
  return std::move(**active);
}

} // namespace

namespace detail {

// Values fetched once per key for the lifetime of the cache. Concurrent
// lookups of a key wait for the one fetch in progress, and a failed fetch
// is removed, so that the next lookup fetches again.
template <typename Value> class FetchOnceCache {
public:
  template <typename Fetch>
  Result<Value> get(const std::string &key, const Fetch &fetch) {
    std::promise<Result<Value>> promise;
    std::shared_future<Result<Value>> future;
    bool fetch_here = false;
    {
      const std::lock_guard lock(m_mutex);
      const auto found = m_entries.find(key);
      if (found != m_entries.end()) {
        future = found->second;
      } else {
        future = promise.get_future().share();
        m_entries.emplace(key, future);
        fetch_here = true;
      }
    }
    if (!fetch_here) {
      spdlog::debug("certifier: '{}' taken from the issuer cache",
                    mask_url(key));
      return future.get();
    }

    try {
      Result<Value> result = fetch();
      if (!result) {
        forget(key);
      }
      promise.set_value(result);
      return result;
    } catch (...) {
      forget(key);
      promise.set_exception(std::current_exception());
      throw;
    }
  }

private:
  void forget(const std::string &key) {
    const std::lock_guard lock(m_mutex);
    m_entries.erase(key);
  }

  std::mutex m_mutex; // guards m_entries
  std::map<std::string, std::shared_future<Result<Value>>> m_entries;
};

// Keyed by resolved URL: an issuer CA resource maps to its active
// certificate link, and an issuer certificate resource to its content.
struct CertifierIssuerCache {
  FetchOnceCache<std::string> active_links;
  FetchOnceCache<CertificateResource> certificates;
};

} // namespace detail

namespace {

Error with_step(std::string_view step, const Error &error) {
  return Error{error.kind,
               "cannot get " + std::string(step) + ": " + error.message,
               error.http_status};
}

// Follows certificate -> issuer CA resource -> its active certificate until
// a certificate names no issuer. A link back to a resource already in the
// chain ends it, because a root CA resource may name itself as its issuer.
// The leaf is always fetched. The issuer resources come from `issuers`,
// which fetches each URL once.
Result<std::vector<x509::Bytes>>
fetch_chain(HttpClient &client,
            detail::CertifierIssuerCache &issuers,
            std::string_view api_host,
            const std::string &leaf_url) {
  std::vector<x509::Bytes> chain;
  std::set<std::string> visited{leaf_url};
  std::string certificate_url = leaf_url;
  while (true) {
    const std::string_view step =
        chain.empty() ? "the certificate" : "an issuer certificate";
    auto certificate =
        chain.empty() ? fetch_certificate(client, certificate_url)
                      : issuers.certificates.get(certificate_url, [&] {
                          return fetch_certificate(client, certificate_url);
                        });
    if (!certificate) {
      return std::unexpected(with_step(step, certificate.error()));
    }
    if (std::find(chain.begin(), chain.end(), certificate->der) !=
        chain.end()) {
      spdlog::debug("certifier: '{}' repeats a certificate of the chain, "
                    "which ends here",
                    mask_url(certificate_url));
      break;
    }
    chain.push_back(std::move(certificate->der));
    if (!certificate->issuer_link) {
      break;
    }

    const std::string ca_url =
        resolve_link(api_host, *certificate->issuer_link);
    if (!visited.insert(ca_url).second) {
      spdlog::debug("certifier: issuer link '{}' points into the chain, "
                    "which ends here",
                    mask_url(ca_url));
      break;
    }
    if (chain.size() >=
        static_cast<std::size_t>(CertifierHandler::max_chain_length)) {
      return make_error(ErrorKind::protocol,
                        "certificate chain from '" + mask_url(leaf_url) +
                            "' is longer than " +
                            std::to_string(CertifierHandler::max_chain_length) +
                            " certificates: check the CA's issuer links");
    }
    auto active = issuers.active_links.get(
        ca_url, [&] { return fetch_active_certificate_link(client, ca_url); });
    if (!active) {
      return std::unexpected(
          with_step("an issuer CA resource", active.error()));
    }
    certificate_url = resolve_link(api_host, *active);
    if (!visited.insert(certificate_url).second) {
      spdlog::debug("certifier: active certificate link '{}' points into the "
                    "chain, which ends here",
                    mask_url(certificate_url));
      break;
    }
  }
  return chain;
}

PollResult issued_result(const std::vector<x509::Bytes> &chain) {
  PollResult result = make_result(PollStatus::issued, std::string());
  for (const x509::Bytes &der : chain) {
    result.chain_pem += x509::der_to_pem(der);
  }
  result.cert_raw = x509::encode_base64(chain.front());
  return result;
}

} // namespace

Result<CertifierSettings>
read_certifier_settings(const IniFile &ini,
                        const ProxyList &proxies,
                        const EnvironmentLookup &environment) {
  CertifierSettings settings;
  auto api_host = read_api_host(ini);
  if (!api_host) {
    return std::unexpected(api_host.error());
  }
  settings.api_host = std::move(*api_host);

  auto user = read_value_or_variable(ini, "api_user", environment);
  if (!user) {
    return std::unexpected(user.error());
  }
  auto password = read_value_or_variable(ini, "api_password", environment);
  if (!password) {
    return std::unexpected(password.error());
  }
  settings.credentials =
      BasicCredentials{std::move(*user), std::move(*password)};
  settings.ca_name = ini.value(section, "ca_name").value_or(std::string());

  auto http = read_http_options(ini, proxies);
  if (!http) {
    return std::unexpected(http.error());
  }
  settings.http = std::move(*http);
  return settings;
}

Result<std::unique_ptr<CertifierHandler>>
CertifierHandler::create(CertifierSettings settings) {
  auto origin = Origin::from_url(settings.api_host);
  if (!origin) {
    return make_error(ErrorKind::config,
                      "invalid 'api_host' in [CAhandler]: " +
                          origin.error().message);
  }
  if (origin->scheme == "https" &&
      settings.http.tls_verification == TlsVerification::disabled) {
    spdlog::warn("TLS certificate verification is off for api_host '{}' "
                 "because [CAhandler] ca_bundle is False",
                 origin->to_string());
  }
  if (origin->scheme == "http") {
    spdlog::warn("api_host '{}' uses plain HTTP, so the CA credentials travel "
                 "unencrypted: use https",
                 origin->to_string());
  }
  HttpClient client(settings.http, *origin, settings.credentials);
  return std::unique_ptr<CertifierHandler>(
      new CertifierHandler(std::move(settings), std::move(client)));
}

CertifierHandler::CertifierHandler(CertifierSettings settings,
                                   HttpClient client)
    : m_settings(std::move(settings)), m_client(std::move(client)),
      m_issuers(std::make_unique<detail::CertifierIssuerCache>()) {}

CertifierHandler::~CertifierHandler() = default;

PollResult CertifierHandler::poll(const PendingRequest &request) {
  const std::string request_url =
      resolve_link(m_settings.api_host, request.poll_identifier);
  auto resource = fetch_json(m_client, request_url);
  if (!resource) {
    return failed(with_step("the request status", resource.error()).message);
  }
  auto status = optional_string(*resource, "status", request_url);
  if (!status) {
    return failed(with_step("the request status", status.error()).message);
  }
  if (!*status) {
    return failed(
        with_step("the request status", missing_field("status", request_url))
            .message);
  }
  spdlog::debug("certifier: request '{}' of certificate '{}' has status {}",
                mask_url(request_url),
                request.certificate_name,
                quote_value(**status));

  // NOTE: "pending" is the only waiting status known for sure, so any other
  // value besides accepted and rejected is reported as a failure, which
  // makes a change of the CA's API visible instead of waiting forever.
  const std::string state = to_lower(**status);
  if (state == "pending") {
    return make_result(PollStatus::pending, std::string());
  }
  if (state == "rejected") {
    return make_result(PollStatus::rejected, "request rejected by the CA");
  }
  if (state != "accepted") {
    return failed("unknown request status " + quote_value(**status) +
                  " from '" + mask_url(request_url) + "'");
  }

  auto link = optional_string(*resource, "certificate", request_url);
  if (!link) {
    return failed(link.error().message);
  }
  if (!*link) {
    return failed("response from '" + mask_url(request_url) +
                  "' has status 'accepted' but no 'certificate' field");
  }
  const std::string certificate_url = resolve_link(m_settings.api_host, **link);
  auto chain =
      fetch_chain(m_client, *m_issuers, m_settings.api_host, certificate_url);
  if (!chain) {
    return failed(chain.error().message);
  }
  spdlog::debug("certifier: certificate '{}' issued with a chain of {} "
                "certificates",
                request.certificate_name,
                chain->size());
  return issued_result(*chain);
}

} // namespace cert_poll
