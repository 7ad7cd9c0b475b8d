// SPDX-License-Identifier: Apache-2.0
#include "cert_poll/http.hpp"
#include "cert_poll/version.hpp"
#include "cert_poll/x509.hpp"

#include <arpa/inet.h>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <netinet/in.h>
#include <set>
#include <stdexcept>
#include <string>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include <gtest/gtest.h>
#include <httplib.h>

#include "support/test_server.hpp"
#include "support/test_support.hpp"

namespace {

using cert_poll::BasicCredentials;
using cert_poll::ErrorKind;
using cert_poll::HttpClient;
using cert_poll::HttpOptions;
using cert_poll::Origin;
using cert_poll::TlsVerification;

using test_support::make_self_signed;
using test_support::TestCertificate;
using test_support::TestServer;

// ---- test servers ----

// A bound TCP port with no listener behind it, for "connection refused".
int closed_port() {
  const int socket_fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof(address);
  if (::bind(socket_fd, reinterpret_cast<sockaddr *>(&address), length) != 0 ||
      ::getsockname(
          socket_fd, reinterpret_cast<sockaddr *>(&address), &length) != 0) {
    ::close(socket_fd);
    throw std::runtime_error("cannot bind a TCP socket on 127.0.0.1");
  }
  ::close(socket_fd);
  return ntohs(address.sin_port);
}

BasicCredentials test_credentials() {
  return BasicCredentials{"poll-user",
                          "test-password-" + std::to_string(::getpid())};
}

// Client options that trust `identity` through a bundle file in `folder`.
HttpOptions trusting(const TestCertificate &identity,
                     const test_support::TempDir &folder) {
  HttpOptions options;
  options.tls_verification = TlsVerification::bundle_file;
  options.ca_bundle = folder / "bundle.pem";
  test_support::write_file(options.ca_bundle, identity.pem);
  options.timeout = std::chrono::seconds(10);
  return options;
}

class HttpClientTest : public ::testing::Test {
protected:
  void SetUp() override {
    m_server.routes().Get(
        "/ok", [](const httplib::Request &, httplib::Response &response) {
          response.set_content(R"({"status": "ok"})", "application/json");
        });
  }

  HttpClient make_client(HttpOptions options) {
    return HttpClient(
        std::move(options), m_server.origin(), test_credentials());
  }
  HttpClient make_client() {
    return make_client(trusting(m_identity, m_folder));
  }

  test_support::TempDir m_folder;
  TestCertificate m_identity = make_self_signed("http-test-server");
  TestServer m_server{m_identity};
};

// ---- Origin ----

struct OriginCase {
  std::string url;
  std::string scheme;
  std::string host;
  int port;
};

TEST(Origin, ParsesValidUrls) {
  const std::vector<OriginCase> cases = {
      {"https://ca.example/v1/requests/1", "https", "ca.example", 443},
      {"http://ca.example", "http", "ca.example", 80},
      {"HTTPS://CA.Example:8443/x?y=1", "https", "ca.example", 8443},
      {"https://127.0.0.1:9443", "https", "127.0.0.1", 9443},
      {"https://[::1]:8443/v1", "https", "::1", 8443},
      {"http://[::1]/", "http", "::1", 80},
  };
  for (const OriginCase &expected : cases) {
    SCOPED_TRACE(expected.url);
    const auto origin = Origin::from_url(expected.url);
    ASSERT_TRUE(origin.has_value()) << origin.error().message;
    EXPECT_EQ(origin->scheme, expected.scheme);
    EXPECT_EQ(origin->host, expected.host);
    EXPECT_EQ(origin->port, expected.port);
  }
}

TEST(Origin, RejectsInvalidUrls) {
  const std::vector<std::string> urls = {
      "",
      "ca.example/v1",
      "/v1/requests/1",
      "//ca.example/v1",
      "ftp://ca.example/",
      "file:///etc/hosts",
      "https://user:secret@ca.example/",
      "https://user@ca.example/",
      "https://ca.example:99999/",
      "https://ca.example:0/",
      "https://",
  };
  for (const std::string &url : urls) {
    SCOPED_TRACE(url);
    const auto origin = Origin::from_url(url);
    ASSERT_FALSE(origin.has_value());
    EXPECT_EQ(origin.error().kind, ErrorKind::origin);
  }
}

TEST(Origin, UserinfoMessageHidesPassword) {
  const auto origin = Origin::from_url("https://user:secret@ca.example/");
  ASSERT_FALSE(origin.has_value());
  EXPECT_EQ(origin.error().message.find("secret"), std::string::npos);
}

TEST(Origin, ComparesDefaultPorts) {
  EXPECT_EQ(Origin::from_url("https://ca.example/").value(),
            Origin::from_url("https://CA.example:443/x").value());
  EXPECT_NE(Origin::from_url("https://ca.example/").value(),
            Origin::from_url("http://ca.example:443/").value());
}

TEST(Origin, ToStringBracketsIpv6) {
  EXPECT_EQ(Origin::from_url("https://[::1]:8443/").value().to_string(),
            "https://[::1]:8443");
  EXPECT_EQ(Origin::from_url("http://ca.example/").value().to_string(),
            "http://ca.example:80");
}

// ---- mask_url ----

TEST(MaskUrl, MasksUserinfoAndQuery) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"https://ca.example/v1/requests/1", "https://ca.example/v1/requests/1"},
      {"https://user:secret@ca.example/x", "https://***@ca.example/x"},
      {"https://ca.example/x?token=secret", "https://ca.example/x?***"},
      {"https://ca.example/x?token=secret#top", "https://ca.example/x?***#top"},
      {"https://u:p@ca.example:8443/x?a=b",
       "https://***@ca.example:8443/x?***"},
      {"https://ca.example/x?", "https://ca.example/x?"},
      {"/v1/requests/1?a=b", "/v1/requests/1?***"},
  };
  for (const auto &[url, masked] : cases) {
    EXPECT_EQ(cert_poll::mask_url(url), masked) << url;
  }
}

// ---- HttpClient ----

TEST_F(HttpClientTest, GetReturnsBody) {
  m_server.start();
  HttpClient client = make_client();
  const auto response = client.get(m_server.url("/ok"));
  ASSERT_TRUE(response.has_value()) << response.error().message;
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, R"({"status": "ok"})");
}

TEST_F(HttpClientTest, GetSendsBasicAuthAndHeaders) {
  m_server.start();
  HttpClient client = make_client();
  ASSERT_TRUE(client.get(m_server.url("/ok")).has_value());
  const auto seen = m_server.seen();
  ASSERT_EQ(seen.size(), 1U);
  const BasicCredentials credentials = test_credentials();
  const std::string user_and_password =
      credentials.user + ":" + credentials.password;
  const std::string expected_authorization =
      "Basic " + cert_poll::x509::encode_base64(cert_poll::x509::Bytes(
                     user_and_password.begin(), user_and_password.end()));
  EXPECT_EQ(seen[0].authorization, expected_authorization);
  EXPECT_EQ(seen[0].accept, "application/json");
  EXPECT_EQ(seen[0].user_agent, std::string("cert_poll/") + cert_poll::version);
}

TEST_F(HttpClientTest, GetReusesConnection) {
  m_server.start();
  HttpClient client = make_client();
  ASSERT_TRUE(client.get(m_server.url("/ok")).has_value());
  ASSERT_TRUE(client.get(m_server.url("/ok")).has_value());
  const auto seen = m_server.seen();
  ASSERT_EQ(seen.size(), 2U);
  EXPECT_EQ(seen[0].remote_port, seen[1].remote_port);
  EXPECT_EQ(m_server.handshakes(), 1);
}

TEST_F(HttpClientTest, OtherOriginGetsNothing) {
  TestServer other(m_identity);
  other.routes().Get("/ok",
                     [](const httplib::Request &, httplib::Response &response) {
                       response.set_content("{}", "application/json");
                     });
  m_server.start();
  other.start();
  HttpClient client = make_client();

  const auto response = client.get(other.url("/ok"));
  ASSERT_FALSE(response.has_value());
  EXPECT_EQ(response.error().kind, ErrorKind::origin);
  EXPECT_NE(response.error().message.find("outside api_host"),
            std::string::npos);
  EXPECT_EQ(other.handshakes(), 0);
  EXPECT_TRUE(other.seen().empty());
}

TEST_F(HttpClientTest, OtherSchemeIsOtherOrigin) {
  m_server.start();
  HttpClient client = make_client();
  const std::string plain_url =
      "http://127.0.0.1:" + std::to_string(m_server.origin().port) + "/ok";
  const auto response = client.get(plain_url);
  ASSERT_FALSE(response.has_value());
  EXPECT_EQ(response.error().kind, ErrorKind::origin);
  EXPECT_TRUE(m_server.seen().empty());
}

TEST_F(HttpClientTest, RedirectIsNotFollowed) {
  TestServer other(m_identity);
  other.routes().Get("/target",
                     [](const httplib::Request &, httplib::Response &response) {
                       response.set_content("{}", "application/json");
                     });
  other.start();
  m_server.routes().Get(
      "/redirect",
      [&other](const httplib::Request &, httplib::Response &response) {
        response.set_redirect(other.url("/target"), 302);
      });
  m_server.start();
  HttpClient client = make_client();

  const auto response = client.get(m_server.url("/redirect"));
  ASSERT_FALSE(response.has_value());
  EXPECT_EQ(response.error().kind, ErrorKind::http_status);
  EXPECT_EQ(response.error().http_status, 302);
  EXPECT_NE(response.error().message.find(other.origin().to_string()),
            std::string::npos)
      << response.error().message;
  EXPECT_EQ(other.handshakes(), 0);
}

TEST_F(HttpClientTest, BodyCapWithContentLength) {
  m_server.routes().Get(
      "/big", [](const httplib::Request &, httplib::Response &response) {
        response.set_content(std::string(5000, 'x'), "application/json");
      });
  m_server.start();
  HttpOptions options = trusting(m_identity, m_folder);
  options.max_body_bytes = 1000;
  HttpClient client = make_client(options);

  const auto response = client.get(m_server.url("/big"));
  ASSERT_FALSE(response.has_value());
  EXPECT_EQ(response.error().kind, ErrorKind::transport);
  EXPECT_NE(response.error().message.find("exceeds 1000 bytes"),
            std::string::npos)
      << response.error().message;
}

TEST_F(HttpClientTest, BodyCapWhenChunked) {
  m_server.routes().Get(
      "/chunked", [](const httplib::Request &, httplib::Response &response) {
        response.set_chunked_content_provider(
            "application/json",
            [](std::size_t offset, httplib::DataSink &sink) {
              if (offset >= 50000) {
                sink.done();
                return true;
              }
              const std::string chunk(1000, 'x');
              return sink.write(chunk.data(), chunk.size());
            });
      });
  m_server.start();
  HttpOptions options = trusting(m_identity, m_folder);
  options.max_body_bytes = 1000;
  HttpClient client = make_client(options);

  const auto response = client.get(m_server.url("/chunked"));
  ASSERT_FALSE(response.has_value());
  EXPECT_EQ(response.error().kind, ErrorKind::transport);
  EXPECT_NE(response.error().message.find("exceeds 1000 bytes"),
            std::string::npos)
      << response.error().message;
}

TEST_F(HttpClientTest, BodyAtCapIsAccepted) {
  m_server.routes().Get(
      "/exact", [](const httplib::Request &, httplib::Response &response) {
        response.set_content(std::string(1000, 'x'), "application/json");
      });
  m_server.start();
  HttpOptions options = trusting(m_identity, m_folder);
  options.max_body_bytes = 1000;
  HttpClient client = make_client(options);

  const auto response = client.get(m_server.url("/exact"));
  ASSERT_TRUE(response.has_value()) << response.error().message;
  EXPECT_EQ(response->body.size(), 1000U);
}

TEST_F(HttpClientTest, SlowServerTimesOut) {
  m_server.routes().Get(
      "/slow", [this](const httplib::Request &, httplib::Response &response) {
        m_server.sleep_unless_stopping(std::chrono::seconds(3));
        response.set_content("{}", "application/json");
      });
  m_server.start();
  HttpOptions options = trusting(m_identity, m_folder);
  options.timeout = std::chrono::seconds(1);
  HttpClient client = make_client(options);

  const auto response = client.get(m_server.url("/slow"));
  ASSERT_FALSE(response.has_value());
  EXPECT_EQ(response.error().kind, ErrorKind::timeout);
}

TEST_F(HttpClientTest, WrongBundleIsTlsError) {
  m_server.start();
  HttpClient client =
      make_client(trusting(make_self_signed("unrelated-root"), m_folder));
  const auto response = client.get(m_server.url("/ok"));
  ASSERT_FALSE(response.has_value());
  EXPECT_EQ(response.error().kind, ErrorKind::tls);
  EXPECT_TRUE(m_server.seen().empty());
}

TEST_F(HttpClientTest, SystemStoreRejectsSelfSigned) {
  m_server.start();
  HttpOptions options;
  options.timeout = std::chrono::seconds(10);
  HttpClient client = make_client(options);
  const auto response = client.get(m_server.url("/ok"));
  ASSERT_FALSE(response.has_value());
  EXPECT_EQ(response.error().kind, ErrorKind::tls);
  EXPECT_TRUE(m_server.seen().empty());
}

TEST_F(HttpClientTest, DisabledVerificationAcceptsAnyServer) {
  m_server.start();
  HttpOptions options;
  options.tls_verification = TlsVerification::disabled;
  options.timeout = std::chrono::seconds(10);
  HttpClient client = make_client(options);
  const auto response = client.get(m_server.url("/ok"));
  ASSERT_TRUE(response.has_value()) << response.error().message;
  EXPECT_EQ(response->status, 200);
}

TEST_F(HttpClientTest, MissingBundleIsConfigError) {
  m_server.start();
  HttpOptions options;
  options.tls_verification = TlsVerification::bundle_file;
  options.ca_bundle = m_folder / "absent.pem";
  HttpClient client = make_client(options);
  const auto response = client.get(m_server.url("/ok"));
  ASSERT_FALSE(response.has_value());
  EXPECT_EQ(response.error().kind, ErrorKind::config);
  EXPECT_NE(response.error().message.find(options.ca_bundle.string()),
            std::string::npos);
  EXPECT_EQ(m_server.handshakes(), 0);
}

TEST_F(HttpClientTest, StatusErrorsCarryCode) {
  m_server.routes().Get(
      "/missing", [](const httplib::Request &, httplib::Response &response) {
        response.status = 404;
        response.set_content("not found\x01\n here", "text/plain");
      });
  m_server.routes().Get(
      "/broken", [](const httplib::Request &, httplib::Response &response) {
        response.status = 500;
        response.set_content(std::string(1000, 'e'), "text/plain");
      });
  m_server.start();
  HttpClient client = make_client();

  const auto missing = client.get(m_server.url("/missing"));
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().kind, ErrorKind::http_status);
  EXPECT_EQ(missing.error().http_status, 404);
  EXPECT_NE(missing.error().message.find("not found here"), std::string::npos)
      << missing.error().message;

  const auto broken = client.get(m_server.url("/broken"));
  ASSERT_FALSE(broken.has_value());
  EXPECT_EQ(broken.error().kind, ErrorKind::http_status);
  EXPECT_EQ(broken.error().http_status, 500);
  EXPECT_LT(broken.error().message.size(), 400U);
}

TEST_F(HttpClientTest, ErrorsNeverContainPassword) {
  m_server.routes().Get(
      "/missing", [](const httplib::Request &, httplib::Response &response) {
        response.status = 404;
      });
  m_server.start();
  HttpClient client = make_client();
  const auto response = client.get(m_server.url("/missing"));
  ASSERT_FALSE(response.has_value());
  EXPECT_EQ(response.error().message.find(test_credentials().password),
            std::string::npos);
}

TEST(HttpClient, ConnectionRefusedIsTransport) {
  const std::string url =
      "http://127.0.0.1:" + std::to_string(closed_port()) + "/ok";
  HttpOptions options;
  options.timeout = std::chrono::seconds(5);
  HttpClient client(options, Origin::from_url(url).value(), test_credentials());
  const auto response = client.get(url);
  ASSERT_FALSE(response.has_value());
  EXPECT_EQ(response.error().kind, ErrorKind::transport);
  // The elapsed time would make the stored error differ on every run.
  EXPECT_EQ(response.error().message.find(" ms"), std::string::npos)
      << response.error().message;
  EXPECT_EQ(client.get(url).error().message, response.error().message);
}

TEST(HttpClient, ProxyFromListIsUsed) {
  // An environment no_proxy would also apply to the explicit proxy.
  ::unsetenv("no_proxy");
  ::unsetenv("NO_PROXY");
  TestServer proxy;
  proxy.routes().Get(
      ".*", [](const httplib::Request &, httplib::Response &response) {
        response.set_content(R"({"via": "proxy"})", "application/json");
      });
  proxy.start();
  const std::string target =
      "http://127.0.0.1:" + std::to_string(closed_port()) + "/v1/requests/1";
  HttpOptions options;
  options.timeout = std::chrono::seconds(5);
  options.proxies =
      cert_poll::ProxyList::parse(R"({"*": ")" + proxy.url("") + R"("})")
          .value();
  HttpClient client(
      options, Origin::from_url(target).value(), test_credentials());

  const auto response = client.get(target);
  ASSERT_TRUE(response.has_value()) << response.error().message;
  EXPECT_EQ(response->body, R"({"via": "proxy"})");
  EXPECT_EQ(proxy.seen().size(), 1U);
}

// ---- concurrent gets ----

// Runs `body(thread_index)` on `threads` threads at once and joins them.
template <typename Body> void run_on_threads(int threads, const Body &body) {
  std::vector<std::thread> workers;
  workers.reserve(static_cast<std::size_t>(threads));
  for (int index = 0; index < threads; ++index) {
    workers.emplace_back([&body, index] { body(index); });
  }
  for (std::thread &worker : workers) {
    worker.join();
  }
}

TEST_F(HttpClientTest, ConcurrentGetsAllSucceed) {
  // httplib closes a keep-alive connection after 5 requests by default,
  // which would hide whether the client reuses its connections.
  m_server.routes().set_keep_alive_max_count(1000);
  m_server.start();
  HttpClient client = make_client();
  constexpr int threads = 8;
  constexpr int gets_per_thread = 20;
  std::atomic<int> failures{0};
  std::atomic<int> wrong_bodies{0};

  run_on_threads(threads, [&](int) {
    for (int get = 0; get < gets_per_thread; ++get) {
      const auto response = client.get(m_server.url("/ok"));
      if (!response) {
        ++failures;
      } else if (response->body != R"({"status": "ok"})") {
        ++wrong_bodies;
      }
    }
  });

  EXPECT_EQ(failures, 0);
  EXPECT_EQ(wrong_bodies, 0);
  const auto seen = m_server.seen();
  EXPECT_EQ(seen.size(), 160U);
  EXPECT_EQ(client.requests_sent(), 160U);
  // One client port per TCP connection: each of the at most 8 easy handles
  // keeps its connection for the gets that take it later.
  std::set<int> client_ports;
  for (const auto &request : seen) {
    client_ports.insert(request.remote_port);
  }
  EXPECT_LE(client_ports.size(), 8U);
  EXPECT_LE(m_server.handshakes(), 8);
}

TEST_F(HttpClientTest, ConcurrentGetsRunInParallel) {
  constexpr auto server_delay = std::chrono::milliseconds(100);
  m_server.routes().Get("/slow",
                        [this, server_delay](const httplib::Request &,
                                             httplib::Response &response) {
                          m_server.sleep_unless_stopping(server_delay);
                          response.set_content("{}", "application/json");
                        });
  m_server.start();
  HttpClient client = make_client();
  constexpr int threads = 8;
  std::atomic<int> failures{0};
  const auto get_slow = [&](int) {
    if (!client.get(m_server.url("/slow"))) {
      ++failures;
    }
  };

  // httplib 0.11 listens with a backlog of 5, so some of 8 new connections
  // at once wait about 1 s for the client's SYN to be sent again. The first
  // round opens the connections, and the timed round reuses them.
  run_on_threads(threads, get_slow);
  const auto start = std::chrono::steady_clock::now();
  run_on_threads(threads, get_slow);
  const auto elapsed = std::chrono::steady_clock::now() - start;

  EXPECT_EQ(failures, 0);
  // One after another would take 8 x 100 ms. The bound leaves room for a
  // loaded machine.
  EXPECT_LT(elapsed, 4 * server_delay)
      << std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count()
      << " ms";
  EXPECT_EQ(client.requests_sent(), 16U);
}

TEST_F(HttpClientTest, ConcurrentSetDeadlineIsSafe) {
  m_server.start();
  HttpClient client = make_client();
  std::atomic<bool> done{false};
  std::atomic<int> failures{0};

  std::thread setter([&] {
    while (!done) {
      client.set_deadline(std::chrono::steady_clock::now() +
                          std::chrono::seconds(30));
      client.set_deadline(std::nullopt);
    }
  });
  run_on_threads(4, [&](int) {
    for (int get = 0; get < 10; ++get) {
      if (!client.get(m_server.url("/ok"))) {
        ++failures;
      }
    }
  });
  done = true;
  setter.join();

  EXPECT_EQ(failures, 0);
  EXPECT_EQ(client.requests_sent(), 40U);
}

TEST_F(HttpClientTest, StopFlagAbortsAllThreads) {
  m_server.routes().Get(
      "/slow", [this](const httplib::Request &, httplib::Response &response) {
        m_server.sleep_unless_stopping(std::chrono::seconds(5));
        response.set_content("{}", "application/json");
      });
  m_server.start();
  HttpClient client = make_client();
  std::atomic<bool> stop{false};
  client.set_stop_flag(&stop);
  std::atomic<int> aborted{0};

  const auto start = std::chrono::steady_clock::now();
  std::thread stopper([&stop] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    stop = true;
  });
  run_on_threads(4, [&](int) {
    const auto response = client.get(m_server.url("/slow"));
    if (!response && response.error().kind == ErrorKind::transport &&
        response.error().message.find("a stop was requested") !=
            std::string::npos) {
      ++aborted;
    }
  });
  stopper.join();
  const auto elapsed = std::chrono::steady_clock::now() - start;

  EXPECT_EQ(aborted, 4);
  // libcurl's progress callback runs about once a second.
  EXPECT_LT(elapsed, std::chrono::seconds(3));
  client.set_stop_flag(nullptr);
}

// ---- requests_sent ----

TEST_F(HttpClientTest, RequestsSentCountsRetries) {
  std::atomic<int> busy_responses{0};
  m_server.routes().Get(
      "/busy",
      [&busy_responses](const httplib::Request &, httplib::Response &response) {
        if (busy_responses++ == 0) {
          response.status = 503;
          response.set_header("Retry-After", "0");
          return;
        }
        response.set_content("{}", "application/json");
      });
  m_server.start();
  HttpClient client = make_client();
  EXPECT_EQ(client.requests_sent(), 0U);

  ASSERT_TRUE(client.get(m_server.url("/ok")).has_value());
  EXPECT_EQ(client.requests_sent(), 1U);

  const auto response = client.get(m_server.url("/busy"));
  ASSERT_TRUE(response.has_value()) << response.error().message;
  EXPECT_EQ(m_server.seen().size(), 3U);
  EXPECT_EQ(client.requests_sent(), 3U);
}

TEST_F(HttpClientTest, RequestsSentSkipsUnsentGets) {
  m_server.start();
  HttpClient client = make_client();

  const auto other_origin = client.get("https://127.0.0.1:1/ok");
  ASSERT_FALSE(other_origin.has_value());
  EXPECT_EQ(client.requests_sent(), 0U);

  client.set_deadline(std::chrono::steady_clock::now() -
                      std::chrono::seconds(1));
  ASSERT_FALSE(client.get(m_server.url("/ok")).has_value());
  client.set_deadline(std::nullopt);
  EXPECT_EQ(client.requests_sent(), 0U);

  std::atomic<bool> stop{true};
  client.set_stop_flag(&stop);
  ASSERT_FALSE(client.get(m_server.url("/ok")).has_value());
  client.set_stop_flag(nullptr);
  EXPECT_EQ(client.requests_sent(), 0U);
  EXPECT_TRUE(m_server.seen().empty());
}

TEST(HttpClient, RequestsSentSkipsRefusedConnection) {
  const std::string url =
      "http://127.0.0.1:" + std::to_string(closed_port()) + "/ok";
  HttpOptions options;
  options.timeout = std::chrono::seconds(5);
  HttpClient client(options, Origin::from_url(url).value(), test_credentials());
  ASSERT_FALSE(client.get(url).has_value());
  EXPECT_EQ(client.requests_sent(), 0U);
}

TEST_F(HttpClientTest, RequestsSentSkipsTlsFailure) {
  m_server.start();
  HttpClient client =
      make_client(trusting(make_self_signed("unrelated-root"), m_folder));
  ASSERT_FALSE(client.get(m_server.url("/ok")).has_value());
  EXPECT_EQ(client.requests_sent(), 0U);
}

TEST(HttpClient, MovedClientStillWorks) {
  TestServer server;
  server.routes().Get(
      "/ok", [](const httplib::Request &, httplib::Response &response) {
        response.set_content("{}", "application/json");
      });
  server.start();
  HttpClient first(HttpOptions{}, server.origin(), test_credentials());
  HttpClient second = std::move(first);
  const auto response = second.get(server.url("/ok"));
  ASSERT_TRUE(response.has_value()) << response.error().message;
  EXPECT_EQ(second.allowed_origin(), server.origin());
  EXPECT_EQ(second.requests_sent(), 1U);
  EXPECT_EQ(first.requests_sent(), 0U);
}

} // namespace
