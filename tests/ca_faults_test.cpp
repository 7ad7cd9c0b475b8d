// SPDX-License-Identifier: Apache-2.0
// Faulty CAs: servers on 127.0.0.1 that refuse, reset, stall, send endless
// or hostile bodies, redirect, present bad TLS certificates or respond with
// error statuses. Each fault must fail the one request with an error that
// names the cause, and a pass must go on with the other requests.

#include "cert_poll/handlers/certifier.hpp"
#include "cert_poll/http.hpp"
#include "cert_poll/poller.hpp"
#include "cert_poll/store.hpp"
#include "cert_poll/x509.hpp"

#include <arpa/inet.h>
#include <array>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <netinet/in.h>
#include <poll.h>
#include <stdexcept>
#include <string>
#include <string_view>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include <gtest/gtest.h>
#include <httplib.h>

#include "support/acme_db.hpp"
#include "support/test_server.hpp"
#include "support/test_support.hpp"

namespace {

using cert_poll::BasicCredentials;
using cert_poll::ErrorKind;
using cert_poll::HttpClient;
using cert_poll::HttpOptions;
using cert_poll::Origin;
using cert_poll::PollStatus;
using cert_poll::TlsVerification;

using test_support::make_self_signed;
using test_support::TestCertificate;
using test_support::TestServer;

constexpr const char *k_user = "faults-user";
constexpr const char *k_password = "not-a-real-secret-c4f1";

BasicCredentials credentials() {
  return BasicCredentials{k_user, k_password};
}

bool contains(const std::string &text, const std::string &part) {
  return text.find(part) != std::string::npos;
}

bool is_printable_ascii(const std::string &text) {
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte >= 0x7f) {
      return false;
    }
  }
  return true;
}

// ---- a raw TCP server ----

// Sends all of `data`, and returns false once the peer is gone.
bool send_all(int socket_fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t sent =
        ::send(socket_fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (sent <= 0) {
      return false;
    }
    data.remove_prefix(static_cast<std::size_t>(sent));
  }
  return true;
}

// A TCP server on 127.0.0.1 that reads each request's headers and then lets
// a responder write whatever bytes it likes, for faults that an HTTP server
// library does not produce. It serves one connection at a time.
class RawServer {
public:
  // Writes the response to `socket_fd`. It should return soon once
  // `stopping` is true. The server closes the socket afterwards.
  using Responder =
      std::function<void(int socket_fd, const std::atomic<bool> &stopping)>;

  explicit RawServer(Responder responder) : m_responder(std::move(responder)) {
    m_listen_fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof(address);
    auto *generic = reinterpret_cast<sockaddr *>(&address);
    if (m_listen_fd < 0 || ::bind(m_listen_fd, generic, length) != 0 ||
        ::listen(m_listen_fd, 8) != 0 ||
        ::getsockname(m_listen_fd, generic, &length) != 0) {
      if (m_listen_fd >= 0) {
        ::close(m_listen_fd);
      }
      throw std::runtime_error("cannot listen on a TCP socket on 127.0.0.1");
    }
    m_port = ntohs(address.sin_port);
    m_thread = std::thread([this] { serve(); });
  }

  ~RawServer() {
    m_stopping = true;
    m_thread.join();
    ::close(m_listen_fd);
  }
  RawServer(const RawServer &) = delete;
  RawServer &operator=(const RawServer &) = delete;

  std::string url(const std::string &path) const {
    return "http://127.0.0.1:" + std::to_string(m_port) + path;
  }

private:
  void serve() {
    while (!m_stopping) {
      pollfd listener{m_listen_fd, POLLIN, 0};
      if (::poll(&listener, 1, 50) <= 0) {
        continue;
      }
      const int socket_fd = ::accept(m_listen_fd, nullptr, nullptr);
      if (socket_fd < 0) {
        continue;
      }
      if (read_request_headers(socket_fd)) {
        m_responder(socket_fd, m_stopping);
      }
      ::close(socket_fd);
    }
  }

  // Reads up to the blank line that ends the request headers, waiting at
  // most 2 s for each read.
  static bool read_request_headers(int socket_fd) {
    std::string received;
    std::array<char, 4096> buffer{};
    while (received.size() < 65536 &&
           received.find("\r\n\r\n") == std::string::npos) {
      pollfd peer{socket_fd, POLLIN, 0};
      if (::poll(&peer, 1, 2000) <= 0) {
        return false;
      }
      const ssize_t count = ::recv(socket_fd, buffer.data(), buffer.size(), 0);
      if (count <= 0) {
        return false;
      }
      received.append(buffer.data(), static_cast<std::size_t>(count));
    }
    return true;
  }

  Responder m_responder;
  int m_listen_fd = -1;
  int m_port = 0;
  std::atomic<bool> m_stopping{false};
  std::thread m_thread;
};

// Makes close() send a TCP RST instead of a FIN.
void reset_on_close(int socket_fd) {
  linger option{1, 0};
  ::setsockopt(socket_fd, SOL_SOCKET, SO_LINGER, &option, sizeof(option));
}

const std::string k_partial_head = "HTTP/1.1 200 OK\r\n"
                                   "Content-Type: application/json\r\n"
                                   "Content-Length: 1000\r\n"
                                   "\r\n";

HttpClient plain_client(const std::string &url,
                        std::chrono::milliseconds timeout) {
  HttpOptions options;
  options.timeout = timeout;
  return HttpClient(options, Origin::from_url(url).value(), credentials());
}

// ---- transport faults ----

TEST(TransportFault, ConnectionRefused) {
  std::string url;
  {
    RawServer closed([](int, const std::atomic<bool> &) {});
    url = closed.url("/v1/requests/1");
  }
  HttpClient client = plain_client(url, std::chrono::seconds(2));

  const auto response = client.get(url);

  ASSERT_FALSE(response.has_value());
  EXPECT_EQ(response.error().kind, ErrorKind::transport);
  EXPECT_TRUE(contains(response.error().message, "GET '" + url + "' failed"))
      << response.error().message;
  EXPECT_TRUE(contains(response.error().message, "onnect"))
      << response.error().message;
}

TEST(TransportFault, CloseMidBody) {
  RawServer server([](int socket_fd, const std::atomic<bool> &) {
    send_all(socket_fd, k_partial_head + std::string(100, ' '));
  });
  HttpClient client = plain_client(server.url("/"), std::chrono::seconds(2));

  const auto response = client.get(server.url("/v1/requests/1"));

  ASSERT_FALSE(response.has_value());
  EXPECT_EQ(response.error().kind, ErrorKind::transport);
  EXPECT_TRUE(contains(response.error().message, "900 bytes remaining"))
      << response.error().message;
}

TEST(TransportFault, ResetMidBody) {
  RawServer server([](int socket_fd, const std::atomic<bool> &) {
    send_all(socket_fd, k_partial_head + std::string(100, ' '));
    // Give the client time to read the partial body, so that the reset
    // arrives while it waits for the rest.
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    reset_on_close(socket_fd);
  });
  HttpClient client = plain_client(server.url("/"), std::chrono::seconds(2));

  const auto response = client.get(server.url("/v1/requests/1"));

  ASSERT_FALSE(response.has_value());
  EXPECT_EQ(response.error().kind, ErrorKind::transport);
  EXPECT_TRUE(contains(response.error().message, "reset"))
      << response.error().message;
}

TEST(TransportFault, OneBytePerSecondTimesOut) {
  const std::string response_text = k_partial_head + std::string(1000, ' ');
  RawServer server(
      [&response_text](int socket_fd, const std::atomic<bool> &stopping) {
        // At most 30 s, and ends once the client has gone or the test ends.
        for (std::size_t at = 0; at < 30 && !stopping; ++at) {
          if (!send_all(socket_fd, response_text.substr(at, 1))) {
            return;
          }
          for (int step = 0; step < 20 && !stopping; ++step) {
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
          }
        }
      });
  HttpClient client = plain_client(server.url("/"), std::chrono::seconds(1));

  const auto response = client.get(server.url("/v1/requests/1"));

  ASSERT_FALSE(response.has_value());
  EXPECT_EQ(response.error().kind, ErrorKind::timeout);
  EXPECT_TRUE(contains(response.error().message, "timed out after 1000 ms"))
      << response.error().message;
}

TEST(TransportFault, EndlessBodyHitsCap) {
  RawServer server([](int socket_fd, const std::atomic<bool> &stopping) {
    if (!send_all(socket_fd,
                  "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n")) {
      return;
    }
    const std::string chunk = "4000\r\n" + std::string(0x4000, '[') + "\r\n";
    // At most 64 MiB, and ends once the client has gone.
    for (int count = 0; count < 4096 && !stopping; ++count) {
      if (!send_all(socket_fd, chunk)) {
        return;
      }
    }
  });
  HttpOptions options;
  options.timeout = std::chrono::seconds(10);
  options.max_body_bytes = 65536;
  HttpClient client(
      options, Origin::from_url(server.url("/")).value(), credentials());

  const auto response = client.get(server.url("/v1/requests/1"));

  ASSERT_FALSE(response.has_value());
  EXPECT_EQ(response.error().kind, ErrorKind::transport);
  EXPECT_TRUE(contains(response.error().message, "exceeds 65536 bytes"))
      << response.error().message;
}

// ---- HTTPS servers with faults ----

class HttpsFault : public ::testing::Test {
protected:
  HttpOptions trusting(const TestCertificate &identity,
                       std::chrono::milliseconds timeout) const {
    HttpOptions options;
    options.tls_verification = TlsVerification::bundle_file;
    options.ca_bundle = m_folder / "bundle.pem";
    test_support::write_file(options.ca_bundle, identity.pem);
    options.timeout = timeout;
    return options;
  }

  HttpClient
  make_client(std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    return HttpClient(
        trusting(m_identity, timeout), m_server.origin(), credentials());
  }

  // Serves `status` with `retry_after` (none when empty) at `path`, and
  // 200 with `{}` once it has sent that status `errors` times.
  void serve_status(const std::string &path,
                    int status,
                    const std::string &retry_after,
                    int errors = 1000) {
    m_server.routes().Get(
        path,
        [this, status, retry_after, errors](const httplib::Request &,
                                            httplib::Response &response) {
          if (m_status_count++ >= errors) {
            response.set_content("{}", "application/json");
            return;
          }
          response.status = status;
          if (!retry_after.empty()) {
            response.set_header("Retry-After", retry_after);
          }
          response.set_content("try later", "text/plain");
        });
  }

  test_support::TempDir m_folder;
  TestCertificate m_identity = make_self_signed("ca-faults-test");
  TestServer m_server{m_identity};
  std::atomic<int> m_status_count{0};
};

TEST_F(HttpsFault, RedirectLoopIsNotFollowed) {
  m_server.routes().Get(
      "/loop", [](const httplib::Request &, httplib::Response &response) {
        response.set_redirect("/loop", 302);
      });
  m_server.start();
  HttpClient client = make_client();

  const auto response = client.get(m_server.url("/loop"));

  ASSERT_FALSE(response.has_value());
  EXPECT_EQ(response.error().kind, ErrorKind::http_status);
  EXPECT_EQ(response.error().http_status, 302);
  EXPECT_TRUE(contains(response.error().message,
                       "redirects to '" + m_server.origin().to_string() + "'"))
      << response.error().message;
  EXPECT_EQ(m_server.seen().size(), 1U);
}

TEST_F(HttpsFault, RedirectToOtherOriginNamesIt) {
  m_server.routes().Get(
      "/away", [](const httplib::Request &, httplib::Response &response) {
        response.set_redirect("https://[::1]:9/v1/requests/1", 307);
      });
  m_server.start();
  HttpClient client = make_client();

  const auto response = client.get(m_server.url("/away"));

  ASSERT_FALSE(response.has_value());
  EXPECT_EQ(response.error().kind, ErrorKind::http_status);
  EXPECT_EQ(response.error().http_status, 307);
  EXPECT_TRUE(
      contains(response.error().message, "redirects to 'https://[::1]:9'"))
      << response.error().message;
  EXPECT_TRUE(contains(response.error().message, "not followed"))
      << response.error().message;
}

TEST_F(HttpsFault, WrongHostNameIsTlsError) {
  test_support::CertificateOptions names;
  names.subject_alt_name = "DNS:ca.other.example";
  const TestCertificate other = make_self_signed("ca.other.example", names);
  TestServer server(other);
  server.routes().Get(
      "/ok", [](const httplib::Request &, httplib::Response &response) {
        response.set_content("{}", "application/json");
      });
  server.start();
  HttpClient client(
      trusting(other, std::chrono::seconds(5)), server.origin(), credentials());

  const auto response = client.get(server.url("/ok"));

  ASSERT_FALSE(response.has_value());
  EXPECT_EQ(response.error().kind, ErrorKind::tls);
  EXPECT_TRUE(contains(response.error().message, "127.0.0.1"))
      << response.error().message;
  EXPECT_TRUE(contains(response.error().message, "host name"))
      << response.error().message;
  EXPECT_TRUE(server.seen().empty());
}

TEST_F(HttpsFault, ExpiredCertificateIsTlsError) {
  test_support::CertificateOptions validity;
  validity.not_before_offset = -7200;
  validity.not_after_offset = -3600;
  const TestCertificate expired = make_self_signed("ca-expired", validity);
  TestServer server(expired);
  server.start();
  HttpClient client(trusting(expired, std::chrono::seconds(5)),
                    server.origin(),
                    credentials());

  const auto response = client.get(server.url("/ok"));

  ASSERT_FALSE(response.has_value());
  EXPECT_EQ(response.error().kind, ErrorKind::tls);
  EXPECT_TRUE(contains(response.error().message, "expired"))
      << response.error().message;
  EXPECT_TRUE(contains(response.error().message, "renewed"))
      << response.error().message;
  EXPECT_TRUE(server.seen().empty());
}

TEST_F(HttpsFault, ErrorStatusesNameStatus) {
  for (const int status : {401, 403, 404, 429, 503}) {
    serve_status("/status/" + std::to_string(status), status, "");
  }
  m_server.start();
  HttpClient client = make_client();

  for (const int status : {401, 403, 404, 429, 503}) {
    SCOPED_TRACE(status);
    const std::string url = m_server.url("/status/" + std::to_string(status));
    const auto response = client.get(url);
    ASSERT_FALSE(response.has_value());
    EXPECT_EQ(response.error().kind, ErrorKind::http_status);
    EXPECT_EQ(response.error().http_status, status);
    EXPECT_TRUE(contains(response.error().message,
                         "HTTP " + std::to_string(status) + " from '" + url))
        << response.error().message;
  }
  EXPECT_EQ(m_server.seen().size(), 5U) << "no status without Retry-After "
                                           "is retried";
}

// ---- Retry-After ----

TEST_F(HttpsFault, RetryAfterSecondsIsHonoured) {
  serve_status("/busy", 503, "1", 1);
  m_server.start();
  HttpClient client = make_client();

  const auto response = client.get(m_server.url("/busy"));

  ASSERT_TRUE(response.has_value()) << response.error().message;
  EXPECT_EQ(response->body, "{}");
  EXPECT_EQ(m_server.seen().size(), 2U);
}

TEST_F(HttpsFault, RetryAfterPastDateRetriesAtOnce) {
  serve_status("/busy", 429, "Wed, 21 Oct 2015 07:28:00 GMT", 2);
  m_server.start();
  HttpClient client = make_client();

  const auto response = client.get(m_server.url("/busy"));

  ASSERT_TRUE(response.has_value()) << response.error().message;
  EXPECT_EQ(m_server.seen().size(), 3U);
}

TEST_F(HttpsFault, RetriesEndAfterTwo) {
  serve_status("/busy", 429, "0");
  m_server.start();
  HttpClient client = make_client();

  const auto response = client.get(m_server.url("/busy"));

  ASSERT_FALSE(response.has_value());
  EXPECT_EQ(response.error().kind, ErrorKind::http_status);
  EXPECT_EQ(response.error().http_status, 429);
  EXPECT_TRUE(contains(response.error().message, "HTTP 429 from"))
      << response.error().message;
  EXPECT_TRUE(
      contains(response.error().message, "after 2 retries with the wait"))
      << response.error().message;
  EXPECT_TRUE(contains(response.error().message, "Retry-After '0'"))
      << response.error().message;
  EXPECT_EQ(m_server.seen().size(), 3U);
}

TEST_F(HttpsFault, LongRetryAfterIsNotWaited) {
  serve_status("/busy", 503, "3600");
  m_server.start();
  HttpClient client = make_client();

  const auto response = client.get(m_server.url("/busy"));

  ASSERT_FALSE(response.has_value());
  EXPECT_EQ(response.error().http_status, 503);
  EXPECT_TRUE(contains(response.error().message, "Retry-After '3600'"))
      << response.error().message;
  EXPECT_TRUE(contains(response.error().message, "longer than the 5000 ms"))
      << response.error().message;
  EXPECT_EQ(m_server.seen().size(), 1U);
}

TEST_F(HttpsFault, RetryAfterPastTimeoutIsNotWaited) {
  serve_status("/busy", 503, "3");
  m_server.start();
  HttpClient client = make_client(std::chrono::seconds(2));

  const auto response = client.get(m_server.url("/busy"));

  ASSERT_FALSE(response.has_value());
  EXPECT_TRUE(contains(response.error().message, "longer than the 2000 ms"))
      << response.error().message;
  EXPECT_EQ(m_server.seen().size(), 1U);
}

TEST_F(HttpsFault, HugeRetryAfterIsNotWaited) {
  serve_status("/busy", 503, "99999999999999999999");
  m_server.start();
  HttpClient client = make_client();

  const auto response = client.get(m_server.url("/busy"));

  ASSERT_FALSE(response.has_value());
  EXPECT_TRUE(contains(response.error().message, "longer than the 5000 ms"))
      << response.error().message;
  EXPECT_EQ(m_server.seen().size(), 1U);
}

TEST_F(HttpsFault, InvalidRetryAfterIsNamed) {
  serve_status("/busy", 503, "soon");
  m_server.start();
  HttpClient client = make_client();

  const auto response = client.get(m_server.url("/busy"));

  ASSERT_FALSE(response.has_value());
  EXPECT_TRUE(contains(response.error().message, "Retry-After 'soon'"))
      << response.error().message;
  EXPECT_TRUE(contains(response.error().message, "neither delta-seconds"))
      << response.error().message;
  EXPECT_EQ(m_server.seen().size(), 1U);
}

TEST_F(HttpsFault, RetryAfterPastDeadlineIsNotWaited) {
  serve_status("/busy", 503, "3");
  m_server.start();
  HttpClient client = make_client(std::chrono::seconds(5));
  client.set_deadline(std::chrono::steady_clock::now() +
                      std::chrono::seconds(2));

  const auto response = client.get(m_server.url("/busy"));

  ASSERT_FALSE(response.has_value());
  EXPECT_EQ(response.error().http_status, 503);
  EXPECT_TRUE(contains(response.error().message, "past the run's deadline"))
      << response.error().message;
  EXPECT_EQ(m_server.seen().size(), 1U);
}

TEST_F(HttpsFault, StopEndsRetryAfterWait) {
  serve_status("/busy", 503, "5");
  m_server.start();
  HttpClient client = make_client(std::chrono::seconds(10));
  std::atomic<bool> stop_requested{false};
  client.set_stop_flag(&stop_requested);
  // Stops once the 503 has been sent, so that the stop lands in the wait.
  std::thread stopper([this, &stop_requested] {
    for (int step = 0; step < 500 && m_server.seen().empty(); ++step) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    stop_requested = true;
  });

  const auto response = client.get(m_server.url("/busy"));
  stopper.join();

  ASSERT_FALSE(response.has_value());
  EXPECT_EQ(response.error().http_status, 503);
  EXPECT_TRUE(contains(response.error().message, "a stop was requested"))
      << response.error().message;
  EXPECT_EQ(m_server.seen().size(), 1U);
}

TEST_F(HttpsFault, RetryAfterOnOtherStatusIsIgnored) {
  serve_status("/gone", 404, "1");
  m_server.start();
  HttpClient client = make_client();

  const auto response = client.get(m_server.url("/gone"));

  ASSERT_FALSE(response.has_value());
  EXPECT_EQ(response.error().http_status, 404);
  EXPECT_FALSE(contains(response.error().message, "Retry-After"))
      << response.error().message;
  EXPECT_EQ(m_server.seen().size(), 1U);
}

// ---- the certifier handler ----

class HandlerFault : public HttpsFault {
protected:
  // Serves `body` as JSON at /v1/requests/<id>.
  void serve_request(const std::string &id, const std::string &body) {
    m_server.routes().Get(
        "/v1/requests/" + id,
        [body](const httplib::Request &, httplib::Response &response) {
          response.set_content(body, "application/json");
        });
  }

  cert_poll::CertifierSettings settings() const {
    cert_poll::CertifierSettings settings;
    settings.api_host = m_server.url("");
    settings.credentials = credentials();
    settings.http = trusting(m_identity, std::chrono::seconds(5));
    return settings;
  }

  cert_poll::PollResult poll(const std::string &id) {
    auto handler = cert_poll::CertifierHandler::create(settings());
    EXPECT_TRUE(handler.has_value()) << handler.error().message;
    cert_poll::PendingRequest request;
    request.certificate_name = "Crt" + id;
    request.order_name = "Ord" + id;
    request.poll_identifier = m_server.url("/v1/requests/" + id);
    return (*handler)->poll(request);
  }
};

std::string nested_arrays(int depth) {
  return std::string(static_cast<std::size_t>(depth), '[') +
         std::string(static_cast<std::size_t>(depth), ']');
}

TEST_F(HandlerFault, InvalidUtf8IsParseError) {
  serve_request("utf8", "{\"status\": \"pend\xff\xfeing\"}");
  m_server.start();

  const cert_poll::PollResult result = poll("utf8");

  EXPECT_EQ(result.status, PollStatus::failed);
  EXPECT_TRUE(contains(result.message, "invalid JSON")) << result.message;
  EXPECT_TRUE(contains(result.message, "UTF-8")) << result.message;
  EXPECT_TRUE(is_printable_ascii(result.message)) << result.message;
}

TEST_F(HandlerFault, DeepNestingIsParseError) {
  serve_request("deep", nested_arrays(100000));
  serve_request("deep-member",
                R"({"status": "pending", "detail": )" + nested_arrays(100000) +
                    "}");
  m_server.start();

  for (const std::string id : {"deep", "deep-member"}) {
    SCOPED_TRACE(id);
    const cert_poll::PollResult result = poll(id);
    EXPECT_EQ(result.status, PollStatus::failed);
    EXPECT_TRUE(contains(result.message, "invalid JSON")) << result.message;
    EXPECT_TRUE(contains(result.message, "nested deeper than 64 levels"))
        << result.message;
  }
}

TEST_F(HandlerFault, NestingAtLimitIsAccepted) {
  // The root object is level 0, so 63 arrays inside it reach level 63.
  serve_request("at-limit",
                R"({"status": "pending", "detail": )" + nested_arrays(63) +
                    "}");
  serve_request("past-limit",
                R"({"status": "pending", "detail": )" + nested_arrays(64) +
                    "}");
  m_server.start();

  const cert_poll::PollResult at_limit = poll("at-limit");
  const cert_poll::PollResult past_limit = poll("past-limit");

  EXPECT_EQ(at_limit.status, PollStatus::pending) << at_limit.message;
  EXPECT_EQ(past_limit.status, PollStatus::failed);
  EXPECT_TRUE(contains(past_limit.message, "nested deeper"))
      << past_limit.message;
}

TEST_F(HandlerFault, UnauthorizedNamesCredentials) {
  serve_status("/v1/requests/auth", 401, "");
  m_server.start();

  const cert_poll::PollResult result = poll("auth");

  EXPECT_EQ(result.status, PollStatus::failed);
  EXPECT_TRUE(contains(result.message, "cannot get the request status"))
      << result.message;
  EXPECT_TRUE(contains(result.message, "HTTP 401")) << result.message;
  EXPECT_TRUE(contains(result.message, "check api_user and api_password"))
      << result.message;
  EXPECT_FALSE(contains(result.message, k_password)) << result.message;
}

TEST_F(HandlerFault, ServiceUnavailableRetriedThenPending) {
  m_server.routes().Get(
      "/v1/requests/busy-then-pending",
      [this](const httplib::Request &, httplib::Response &response) {
        if (m_status_count++ == 0) {
          response.status = 503;
          response.set_header("Retry-After", "1");
          return;
        }
        response.set_content(R"({"status": "pending"})", "application/json");
      });
  m_server.start();

  const cert_poll::PollResult result = poll("busy-then-pending");

  EXPECT_EQ(result.status, PollStatus::pending) << result.message;
}

TEST_F(HandlerFault, ConnectionRefusedFails) {
  m_server.start();
  cert_poll::CertifierSettings refused = settings();
  std::string base;
  {
    RawServer closed([](int, const std::atomic<bool> &) {});
    base = closed.url("");
  }
  refused.api_host = base;
  auto handler = cert_poll::CertifierHandler::create(refused);
  ASSERT_TRUE(handler.has_value()) << handler.error().message;
  cert_poll::PendingRequest request;
  request.certificate_name = "CrtRefused";
  request.poll_identifier = base + "/v1/requests/1";

  const cert_poll::PollResult result = (*handler)->poll(request);

  EXPECT_EQ(result.status, PollStatus::failed);
  EXPECT_TRUE(contains(result.message, "cannot get the request status"))
      << result.message;
  EXPECT_TRUE(contains(result.message, "failed")) << result.message;
}

// ---- a whole pass ----

// A Certifier stand-in that issues one request, rejects one, keeps one
// pending and fails two with faults, over a real SQLite file.
class FaultyPass : public HandlerFault {
protected:
  void SetUp() override {
    std::filesystem::create_directory(m_folder / "pki");
    m_pki = test_support::make_test_pki(m_folder / "pki");
    serve_chain();
    serve_request("issued",
                  R"({"status": "accepted", "certificate": "/v1/certs/leaf"})");
    serve_request("rejected", R"({"status": "rejected"})");
    serve_request("pending", R"({"status": "pending"})");
    serve_request("deep", nested_arrays(100000));
    serve_status("/v1/requests/busy", 503, "3600");
    m_server.start();
  }

  static std::string base64_der(const std::string &pem) {
    auto chain = cert_poll::x509::parse_pem_chain(pem);
    return cert_poll::x509::encode_base64(chain.value().front().der());
  }

  void serve_chain() {
    serve_json("/v1/certs/leaf",
               R"({"certificateBase64": ")" + base64_der(m_pki.leaf_pem) +
                   R"(", "issuer": "/v1/cas/intermediate"})");
    serve_json("/v1/cas/intermediate",
               R"({"certificates": {"active": "/v1/certs/intermediate"}})");
    serve_json("/v1/certs/intermediate",
               R"({"certificateBase64": ")" +
                   base64_der(m_pki.intermediate_pem) +
                   R"(", "issuer": "/v1/cas/root"})");
    serve_json("/v1/cas/root",
               R"({"certificates": {"active": "/v1/certs/root"}})");
    serve_json("/v1/certs/root",
               R"({"certificateBase64": ")" + base64_der(m_pki.root_pem) +
                   R"("})");
  }

  void serve_json(const std::string &path, const std::string &body) {
    m_server.routes().Get(
        path, [body](const httplib::Request &, httplib::Response &response) {
          response.set_content(body, "application/json");
        });
  }

  void add_order(const std::string &name, const std::string &csr) {
    m_database.add_order("Ord" + name,
                         "Crt" + name,
                         "processing",
                         csr,
                         m_server.url("/v1/requests/" + name));
  }

  test_support::TestPki m_pki;
  test_support::AcmeDatabase m_database{
      m_folder / "acme_srv.db", test_support::SchemaGeneration::current};
};

TEST_F(FaultyPass, FaultsFailOnlyTheirRequests) {
  add_order("issued", m_pki.leaf_request.csr_base64);
  for (const std::string name : {"rejected", "pending", "deep", "busy"}) {
    add_order(name,
              test_support::make_key_and_csr(name + ".example").csr_base64);
  }
  auto store = cert_poll::Store::open(m_database.path(), {});
  ASSERT_TRUE(store.has_value()) << store.error().message;
  auto handler = cert_poll::CertifierHandler::create(settings());
  ASSERT_TRUE(handler.has_value()) << handler.error().message;

  auto summary = cert_poll::run_pass(*store, **handler, {});

  ASSERT_TRUE(summary.has_value()) << summary.error().message;
  EXPECT_EQ(summary->issued, 1);
  EXPECT_EQ(summary->rejected, 1);
  EXPECT_EQ(summary->pending, 1);
  EXPECT_EQ(summary->failed, 2);
  EXPECT_EQ(m_database.row("Crtissued").order_status, "valid");
  EXPECT_EQ(m_database.row("Crtrejected").order_status, "invalid");
  EXPECT_EQ(m_database.row("Crtpending").order_status, "processing");

  const test_support::CertificateRow deep = m_database.row("Crtdeep");
  EXPECT_EQ(deep.order_status, "processing");
  ASSERT_TRUE(deep.error.has_value());
  EXPECT_TRUE(contains(*deep.error, "nested deeper than 64 levels"))
      << *deep.error;
  EXPECT_EQ(deep.poll_identifier, m_server.url("/v1/requests/deep"));

  const test_support::CertificateRow busy = m_database.row("Crtbusy");
  EXPECT_EQ(busy.order_status, "processing");
  ASSERT_TRUE(busy.error.has_value());
  EXPECT_TRUE(contains(*busy.error, "HTTP 503")) << *busy.error;
  EXPECT_TRUE(contains(*busy.error, "Retry-After '3600'")) << *busy.error;
  EXPECT_EQ(busy.poll_identifier, m_server.url("/v1/requests/busy"));
}

} // namespace
