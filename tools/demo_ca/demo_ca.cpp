// SPDX-License-Identifier: Apache-2.0
#include "demo_ca.hpp"

#include <algorithm>
#include <arpa/inet.h>
#include <array>
#include <atomic>
#include <cctype>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <sys/socket.h>
#include <thread>
#include <utility>

#include <httplib.h>
#include <nlohmann/json.hpp>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <spdlog/spdlog.h>

#include "demo_pki.hpp"

namespace demo_ca {

namespace {

using Json = nlohmann::json;

using detail::CertificatePtr;
using detail::CsrPtr;
using detail::encode_base64;
using detail::generate_key;
using detail::KeyPtr;
using detail::parse_csr;
using detail::Pki;
using detail::sign_leaf;
using detail::to_der;
using detail::to_pem;

// ---------------------------------------------------------------------------
// Behaviour names

constexpr std::array<std::pair<Behaviour, std::string_view>, 10>
    behaviour_names{{
        {Behaviour::approve, "approve"},
        {Behaviour::reject, "reject"},
        {Behaviour::pending, "pending"},
        {Behaviour::unknown_status, "unknown_status"},
        {Behaviour::server_error, "server_error"},
        {Behaviour::invalid_json, "invalid_json"},
        {Behaviour::missing_certificate_base64, "missing_certificate_base64"},
        {Behaviour::leaf_only, "leaf_only"},
        {Behaviour::wrong_key, "wrong_key"},
        {Behaviour::slow, "slow"},
    }};

// ---------------------------------------------------------------------------
// Addresses and identifiers

// Accepts "localhost", 127.0.0.0/8 and ::1. IPv4-mapped forms such as
// ::ffff:127.0.0.1 are rejected to keep the rule simple.
bool is_loopback(const std::string &host) {
  if (host == "localhost") {
    return true;
  }
  std::array<unsigned char, sizeof(in_addr)> ipv4{};
  if (inet_pton(AF_INET, host.c_str(), ipv4.data()) == 1) {
    return ipv4[0] == 127;
  }
  std::array<unsigned char, sizeof(in6_addr)> ipv6{};
  if (inet_pton(AF_INET6, host.c_str(), ipv6.data()) == 1) {
    return std::memcmp(ipv6.data(), &in6addr_loopback, ipv6.size()) == 0;
  }
  return false;
}

// Ids go into URLs unescaped, so only RFC 3986 unreserved characters are
// allowed.
bool is_valid_id(const std::string &id) {
  constexpr std::size_t max_id_length = 128;
  if (id.empty() || id.size() > max_id_length) {
    return false;
  }
  return std::all_of(id.begin(), id.end(), [](char c) {
    bool letter_or_digit = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                           (c >= '0' && c <= '9');
    return letter_or_digit || c == '-' || c == '.' || c == '_' || c == '~';
  });
}

// Compares without an early exit, so the time taken does not reveal how
// many leading characters of a guessed credential were right.
bool equal_in_constant_time(const std::string &left, const std::string &right) {
  if (left.size() != right.size()) {
    return false;
  }
  return CRYPTO_memcmp(left.data(), right.data(), left.size()) == 0;
}

bool starts_with_ignoring_case(const std::string &text,
                               std::string_view prefix) {
  if (text.size() < prefix.size()) {
    return false;
  }
  return std::equal(
      prefix.begin(), prefix.end(), text.begin(), [](char left, char right) {
        return std::tolower(static_cast<unsigned char>(left)) ==
               std::tolower(static_cast<unsigned char>(right));
      });
}

// ---------------------------------------------------------------------------
// Responses

void write_json(httplib::Response &response, int status, const Json &body) {
  response.status = status;
  response.set_content(body.dump(), "application/json");
}

void write_error(httplib::Response &response,
                 int status,
                 const std::string &message) {
  write_json(response, status, Json{{"error", message}});
}

// httplib 0.11 listens with a backlog of 5. When more clients than that
// connect at once, Linux drops the handshakes that do not fit in the accept
// queue, and the clients retransmit about 1 s later. start() raises the
// backlog to this value, and the kernel caps it at net.core.somaxconn.
constexpr int listen_backlog = 1024;
// httplib 0.11 ends a connection after stop() only between requests, so an
// idle keep-alive connection can delay stop() by up to this long.
constexpr time_t keep_alive_timeout_seconds = 1;
// httplib ends a connection after 5 requests by default, which would make a
// client repeat the TLS handshake every fifth request. Production web
// servers keep a connection for many more.
constexpr std::size_t keep_alive_max_requests = 100;

constexpr std::string_view root_ca_id = "demo-root";
constexpr std::string_view issuing_ca_id = "demo-issuing";
constexpr std::string_view root_certificate_id = "demo-root-certificate";
constexpr std::string_view issuing_certificate_id = "demo-issuing-certificate";

} // namespace

Behaviour parse_behaviour(std::string_view text) {
  for (const auto &[behaviour, name] : behaviour_names) {
    if (name == text) {
      return behaviour;
    }
  }
  std::string expected;
  for (const auto &entry : behaviour_names) {
    expected += expected.empty() ? "" : ", ";
    expected += entry.second;
  }
  throw std::invalid_argument("invalid behaviour '" + std::string(text) +
                              "'; expected one of " + expected);
}

std::string_view to_string(Behaviour behaviour) {
  for (const auto &[candidate, name] : behaviour_names) {
    if (candidate == behaviour) {
      return name;
    }
  }
  return "unknown";
}

// ---------------------------------------------------------------------------
// DemoCa

namespace {

struct RequestEntry {
  CsrPtr csr;
  Behaviour behaviour = Behaviour::pending;
  std::string certificate_id; // empty until a certificate is signed
  bool signed_for_wrong_key = false;
};

struct LeafCertificate {
  std::string request_id; // its request's behaviour shapes the resource
  std::vector<unsigned char> der;
};

} // namespace

struct DemoCa::Impl {
  explicit Impl(Options demo_options);

  Options options;
  std::string expected_credentials; // base64 of "user:password"
  Pki pki;
  std::vector<unsigned char> root_der;
  std::vector<unsigned char> intermediate_der;
  httplib::SSLServer server;
  std::thread thread;
  std::atomic<bool> listen_returned{false};
  std::atomic<std::uint64_t> request_count{0};
  // The socket that httplib last created for listening, -1 before bind.
  socket_t listening_socket = -1;
  bool started = false;
  int bound_port = 0;

  mutable std::mutex mutex;
  std::condition_variable stopping_changed;
  bool stopping = false;
  std::map<std::string, RequestEntry> requests;
  std::map<std::string, LeafCertificate> leaves;
  std::uint64_t next_leaf_number = 1;
  std::vector<ReceivedRequest> received;

  std::string base_url() const;
  std::string url(std::string_view collection, std::string_view id) const;

  void install_handlers();
  httplib::Server::HandlerResponse before_routing(const httplib::Request &,
                                                  httplib::Response &);
  bool has_valid_credentials(const httplib::Request &request) const;
  bool wait_unless_stopping(std::chrono::milliseconds delay);

  void get_request(const httplib::Request &, httplib::Response &);
  void write_request_resource(httplib::Response &,
                              const std::string &id,
                              RequestEntry &entry);
  const std::string &issue(const std::string &id, RequestEntry &entry);
  void get_certificate(const httplib::Request &, httplib::Response &);
  void get_ca(const httplib::Request &, httplib::Response &);
  void get_cas(const httplib::Request &, httplib::Response &);
  Json ca_resource(std::string_view ca_id) const;
  void post_decision(const httplib::Request &, httplib::Response &);
};

DemoCa::Impl::Impl(Options demo_options)
    : options(std::move(demo_options)), root_der(to_der(pki.root.get())),
      intermediate_der(to_der(pki.intermediate.get())),
      server(pki.tls_certificate.get(), pki.tls_key.get()) {
  expected_credentials = encode_base64(options.user + ":" + options.password);
  if (!server.is_valid()) {
    throw std::runtime_error("failed to set up TLS for the demo CA: httplib "
                             "rejected the server certificate or key");
  }
  server.new_task_queue = [threads = options.worker_threads] {
    return new httplib::ThreadPool(threads);
  };
  // httplib calls this for the listening socket only, so it is the way to
  // learn that socket's descriptor.
  server.set_socket_options([this](socket_t socket) {
    httplib::default_socket_options(socket);
    listening_socket = socket;
  });
  server.set_keep_alive_timeout(keep_alive_timeout_seconds);
  server.set_keep_alive_max_count(keep_alive_max_requests);
  // httplib writes the headers and the body separately; without TCP_NODELAY
  // the client's delayed ACK delays the body by about 40 ms per response.
  server.set_tcp_nodelay(true);
  install_handlers();
}

std::string DemoCa::Impl::base_url() const {
  bool ipv6 = options.host.find(':') != std::string::npos;
  std::string host = ipv6 ? "[" + options.host + "]" : options.host;
  return "https://" + host + ":" + std::to_string(bound_port);
}

std::string DemoCa::Impl::url(std::string_view collection,
                              std::string_view id) const {
  return base_url() + "/v1/" + std::string(collection) + "/" + std::string(id);
}

void DemoCa::Impl::install_handlers() {
  using httplib::Request;
  using httplib::Response;
  server.set_pre_routing_handler(
      [this](const Request &request, Response &response) {
        return before_routing(request, response);
      });
  server.Get(R"(/v1/requests/([^/]+))",
             [this](const Request &request, Response &response) {
               get_request(request, response);
             });
  server.Get(R"(/v1/certificates/([^/]+))",
             [this](const Request &request, Response &response) {
               get_certificate(request, response);
             });
  server.Get(R"(/v1/cas/([^/]+))",
             [this](const Request &request, Response &response) {
               get_ca(request, response);
             });
  server.Get("/v1/cas", [this](const Request &request, Response &response) {
    get_cas(request, response);
  });
  // The content-reader form runs the handler before httplib reads a body.
  // A POST without Content-Length, as `curl -X POST` sends it, would
  // otherwise wait for the read timeout and fail with 400.
  server.Post(R"(/demo/requests/([^/]+)/(approve|reject|pending))",
              [this](const Request &request,
                     Response &response,
                     const httplib::ContentReader &content_reader) {
                if (request.has_header("Content-Length")) {
                  content_reader(
                      [](const char *, std::size_t) { return true; });
                }
                post_decision(request, response);
              });

  // httplib calls the error handler for every status from 400 up, so it
  // fills in a body only where a handler left none (an unmatched route).
  server.set_error_handler([](const Request &request, Response &response) {
    if (!response.body.empty()) {
      return;
    }
    if (response.status == 404) {
      write_error(response,
                  404,
                  "no resource at '" + request.path +
                      "'; the demo CA serves /v1/requests, /v1/certificates, "
                      "/v1/cas and POST /demo/requests/<id>/<decision>");
      return;
    }
    if (request.path.starts_with("/demo/requests/")) {
      write_error(response,
                  response.status,
                  "invalid decision in '" + request.path +
                      "': POST /demo/requests/<id>/approve, reject or "
                      "pending");
      return;
    }
    write_error(response,
                response.status,
                "request failed with HTTP status " +
                    std::to_string(response.status));
  });
  server.set_exception_handler([](const Request &request,
                                  Response &response,
                                  std::exception_ptr error) {
    std::string message = "unknown exception";
    try {
      std::rethrow_exception(error);
    } catch (const std::exception &exception) {
      message = exception.what();
    } catch (...) {
    }
    spdlog::error("{} {} failed: {}", request.method, request.path, message);
    write_error(response, 500, message);
  });
  server.set_logger([](const Request &request, const Response &response) {
    spdlog::info("{} {} {}", request.method, request.path, response.status);
  });
}

// Records the request, applies Options::latency and checks basic auth for
// every path, before any route runs.
httplib::Server::HandlerResponse
DemoCa::Impl::before_routing(const httplib::Request &request,
                             httplib::Response &response) {
  using httplib::Server;
  request_count.fetch_add(1, std::memory_order_relaxed);
  bool had_authorization = request.has_header("Authorization");
  bool credentials_valid = has_valid_credentials(request);
  if (options.record_requests) {
    ReceivedRequest record{
        request.method, request.path, had_authorization, credentials_valid};
    std::lock_guard lock(mutex);
    // NOTE: the list grows until clear_received(), which the demo_ca binary
    // never calls, by about 100 bytes per request.
    received.push_back(std::move(record));
  }

  if (!wait_unless_stopping(options.latency)) {
    write_error(response, 503, "the demo CA is stopping; retry later");
    return Server::HandlerResponse::Handled;
  }
  if (!credentials_valid) {
    response.set_header("WWW-Authenticate", R"(Basic realm="demo_ca")");
    write_error(response,
                401,
                had_authorization
                    ? "invalid credentials; send the demo CA's user and "
                      "password with basic auth"
                    : "missing credentials; send the demo CA's user and "
                      "password with basic auth");
    return Server::HandlerResponse::Handled;
  }
  return Server::HandlerResponse::Unhandled;
}

bool DemoCa::Impl::has_valid_credentials(
    const httplib::Request &request) const {
  constexpr std::string_view scheme = "Basic ";
  std::string header = request.get_header_value("Authorization");
  if (!starts_with_ignoring_case(header, scheme)) {
    return false;
  }
  std::string token = header.substr(scheme.size());
  token.erase(0, token.find_first_not_of(' '));
  // Clients send canonical padded base64, so comparing the encoded form is
  // the same as comparing the decoded user and password.
  return equal_in_constant_time(token, expected_credentials);
}

// Sleeps for `delay` unless stop() runs first; returns false in that case.
bool DemoCa::Impl::wait_unless_stopping(std::chrono::milliseconds delay) {
  std::unique_lock lock(mutex);
  if (delay <= std::chrono::milliseconds::zero()) {
    return !stopping;
  }
  return !stopping_changed.wait_for(lock, delay, [this] { return stopping; });
}

void DemoCa::Impl::get_request(const httplib::Request &request,
                               httplib::Response &response) {
  std::string id = request.matches[1];
  std::optional<Behaviour> behaviour;
  {
    std::lock_guard lock(mutex);
    auto found = requests.find(id);
    if (found != requests.end()) {
      behaviour = found->second.behaviour;
    }
  }
  if (!behaviour) {
    write_error(
        response, 404, "request '" + id + "' not found; register it first");
    return;
  }
  // The wait happens without the lock, so other clients are served
  // meanwhile, and the behaviour is read again afterwards.
  if (*behaviour == Behaviour::slow &&
      !wait_unless_stopping(options.slow_delay)) {
    write_error(response, 503, "the demo CA is stopping; retry later");
    return;
  }
  std::lock_guard lock(mutex);
  write_request_resource(response, id, requests.at(id));
}

void DemoCa::Impl::write_request_resource(httplib::Response &response,
                                          const std::string &id,
                                          RequestEntry &entry) {
  Json body{{"href", url("requests", id)}};
  switch (entry.behaviour) {
  case Behaviour::server_error:
    write_error(
        response, 500, "internal error simulated by behaviour 'server_error'");
    return;
  case Behaviour::invalid_json:
    response.status = 200;
    response.set_content(R"({"status": "acc)", "application/json");
    return;
  case Behaviour::reject:
    body["status"] = "rejected";
    break;
  case Behaviour::pending:
    body["status"] = "pending";
    break;
  case Behaviour::unknown_status:
    body["status"] = "on-hold-forever";
    break;
  case Behaviour::approve:
  case Behaviour::missing_certificate_base64:
  case Behaviour::leaf_only:
  case Behaviour::wrong_key:
  case Behaviour::slow:
    body["status"] = "accepted";
    body["certificate"] = url("certificates", issue(id, entry));
    break;
  }
  write_json(response, 200, body);
}

// Signs the request's certificate on first use and returns its id. Later
// calls return the same certificate, unless the behaviour moved to or from
// wrong_key, which needs a certificate for another key. The caller holds
// the mutex.
const std::string &DemoCa::Impl::issue(const std::string &id,
                                       RequestEntry &entry) {
  bool wrong_key = entry.behaviour == Behaviour::wrong_key;
  if (!entry.certificate_id.empty() &&
      entry.signed_for_wrong_key == wrong_key) {
    return entry.certificate_id;
  }
  KeyPtr other_key = wrong_key ? generate_key() : nullptr;
  EVP_PKEY *public_key =
      wrong_key ? other_key.get() : X509_REQ_get0_pubkey(entry.csr.get());
  CertificatePtr leaf = sign_leaf(entry.csr.get(),
                                  public_key,
                                  pki.intermediate.get(),
                                  pki.intermediate_key.get());

  std::string certificate_id = "leaf-" + std::to_string(next_leaf_number++);
  leaves[certificate_id] = LeafCertificate{id, to_der(leaf.get())};
  entry.certificate_id = certificate_id;
  entry.signed_for_wrong_key = wrong_key;
  return entry.certificate_id;
}

void DemoCa::Impl::get_certificate(const httplib::Request &request,
                                   httplib::Response &response) {
  std::string id = request.matches[1];
  Json body{{"href", url("certificates", id)}};
  if (id == root_certificate_id) {
    body["certificateBase64"] = encode_base64(root_der);
    write_json(response, 200, body);
    return;
  }
  if (id == issuing_certificate_id) {
    body["certificateBase64"] = encode_base64(intermediate_der);
    // The real API names this link either issuer or issuerCa, so the demo
    // uses issuerCa here and issuer on end-entity certificates.
    body["issuerCa"] = url("cas", root_ca_id);
    write_json(response, 200, body);
    return;
  }

  std::lock_guard lock(mutex);
  auto found = leaves.find(id);
  if (found == leaves.end()) {
    write_error(response, 404, "certificate '" + id + "' not found");
    return;
  }
  Behaviour behaviour = requests.at(found->second.request_id).behaviour;
  if (behaviour != Behaviour::missing_certificate_base64) {
    body["certificateBase64"] = encode_base64(found->second.der);
  }
  if (behaviour != Behaviour::leaf_only) {
    body["issuer"] = url("cas", issuing_ca_id);
  }
  write_json(response, 200, body);
}

Json DemoCa::Impl::ca_resource(std::string_view ca_id) const {
  bool root = ca_id == root_ca_id;
  return Json{
      {"href", url("cas", ca_id)},
      {"name", root ? "cert_poll demo root CA" : "cert_poll demo issuing CA"},
      {"status", "active"},
      {"certificates",
       {{"active",
         url("certificates",
             root ? root_certificate_id : issuing_certificate_id)}}},
  };
}

void DemoCa::Impl::get_ca(const httplib::Request &request,
                          httplib::Response &response) {
  std::string id = request.matches[1];
  if (id != root_ca_id && id != issuing_ca_id) {
    write_error(response, 404, "CA '" + id + "' not found");
    return;
  }
  write_json(response, 200, ca_resource(id));
}

void DemoCa::Impl::get_cas(const httplib::Request &,
                           httplib::Response &response) {
  Json cas = Json::array({ca_resource(root_ca_id), ca_resource(issuing_ca_id)});
  write_json(response, 200, Json{{"cas", cas}});
}

void DemoCa::Impl::post_decision(const httplib::Request &request,
                                 httplib::Response &response) {
  std::string id = request.matches[1];
  Behaviour behaviour = parse_behaviour(request.matches[2].str());
  std::lock_guard lock(mutex);
  auto found = requests.find(id);
  if (found == requests.end()) {
    write_error(response, 404, "request '" + id + "' not found");
    return;
  }
  found->second.behaviour = behaviour;
  spdlog::info("request '{}' set to '{}'", id, to_string(behaviour));
  write_json(response,
             200,
             Json{{"href", url("requests", id)},
                  {"id", id},
                  {"behaviour", to_string(behaviour)}});
}

DemoCa::DemoCa(Options options) {
  if (!is_loopback(options.host)) {
    throw std::invalid_argument(
        "invalid demo CA host '" + options.host +
        "': it serves only loopback addresses; use 127.0.0.1, ::1 or "
        "localhost");
  }
  if (options.password.empty()) {
    throw std::invalid_argument(
        "missing demo CA password; set Options::password");
  }
  if (options.user.find(':') != std::string::npos) {
    throw std::invalid_argument("invalid demo CA user '" + options.user +
                                "': basic auth does not allow ':' in it");
  }
  if (options.worker_threads == 0) {
    throw std::invalid_argument(
        "invalid demo CA worker_threads 0; set Options::worker_threads to 1 "
        "or more");
  }
  m_impl = std::make_unique<Impl>(std::move(options));
}

DemoCa::~DemoCa() {
  stop();
}

void DemoCa::start() {
  Impl &impl = *m_impl;
  if (impl.started) {
    throw std::logic_error("demo CA already started; create a new DemoCa to "
                           "serve again");
  }
  const std::string &host = impl.options.host;
  int port = impl.options.port;
  if (port == 0) {
    port = impl.server.bind_to_any_port(host);
  } else if (!impl.server.bind_to_port(host, port)) {
    port = -1;
  }
  if (port <= 0) {
    throw std::runtime_error("failed to bind the demo CA to '" + host + ":" +
                             std::to_string(impl.options.port) +
                             "'; choose a free port or port 0");
  }
  // Linux updates the backlog when listen() runs again on a listening
  // socket.
  if (impl.listening_socket < 0 ||
      ::listen(impl.listening_socket, listen_backlog) != 0) {
    spdlog::warn("failed to raise the demo CA's listen backlog to {}; more "
                 "than 5 clients connecting at once may wait about 1 s",
                 listen_backlog);
  }
  impl.bound_port = port;
  impl.started = true;
  impl.thread = std::thread([&impl] {
    impl.server.listen_after_bind();
    impl.listen_returned = true;
  });
  // httplib 0.11's stop() does nothing until the server is marked running,
  // so returning earlier would let a quick stop() miss the server.
  while (!impl.server.is_running() && !impl.listen_returned) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

void DemoCa::stop() {
  if (m_impl == nullptr) {
    return;
  }
  Impl &impl = *m_impl;
  {
    std::lock_guard lock(impl.mutex);
    impl.stopping = true;
  }
  impl.stopping_changed.notify_all();
  if (impl.thread.joinable()) {
    impl.server.stop();
    impl.thread.join();
  }
}

int DemoCa::port() const {
  return m_impl->bound_port;
}

std::string DemoCa::base_url() const {
  return m_impl->base_url();
}

std::string DemoCa::root_pem() const {
  return to_pem(m_impl->pki.root.get());
}

std::string DemoCa::add_request(const std::string &id,
                                const std::vector<unsigned char> &csr_der,
                                Behaviour behaviour) {
  if (!m_impl->started) {
    throw std::logic_error("add_request called before start(); start the "
                           "demo CA first, because the poll identifier "
                           "contains the bound port");
  }
  if (!is_valid_id(id)) {
    throw std::invalid_argument("invalid request id '" + id +
                                "'; use 1 to 128 characters from "
                                "A-Z a-z 0-9 . _ ~ -");
  }
  RequestEntry entry;
  entry.csr = parse_csr(id, csr_der);
  entry.behaviour = behaviour;
  std::lock_guard lock(m_impl->mutex);
  m_impl->requests[id] = std::move(entry);
  return m_impl->url("requests", id);
}

void DemoCa::set_behaviour(const std::string &id, Behaviour behaviour) {
  std::lock_guard lock(m_impl->mutex);
  auto found = m_impl->requests.find(id);
  if (found == m_impl->requests.end()) {
    throw std::invalid_argument("request '" + id +
                                "' not found; register it with add_request "
                                "first");
  }
  found->second.behaviour = behaviour;
}

std::vector<ReceivedRequest> DemoCa::received() const {
  std::lock_guard lock(m_impl->mutex);
  return m_impl->received;
}

void DemoCa::clear_received() {
  std::lock_guard lock(m_impl->mutex);
  m_impl->received.clear();
}

std::uint64_t DemoCa::requests_received() const {
  return m_impl->request_count.load(std::memory_order_relaxed);
}

} // namespace demo_ca
