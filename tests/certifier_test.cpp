// SPDX-License-Identifier: Apache-2.0
#include "cert_poll/handlers/certifier.hpp"
#include "cert_poll/x509.hpp"

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <openssl/x509.h>

#include "demo_ca.hpp"
#include "support/test_server.hpp"
#include "support/test_support.hpp"

namespace {

using cert_poll::CertifierHandler;
using cert_poll::CertifierSettings;
using cert_poll::ErrorKind;
using cert_poll::PendingRequest;
using cert_poll::PollResult;
using cert_poll::PollStatus;
using cert_poll::TlsVerification;
using demo_ca::Behaviour;
using test_support::make_self_signed;
using test_support::TestCertificate;
using test_support::TestServer;

std::string random_password() {
  std::random_device device;
  std::ostringstream text;
  text << "test-" << std::hex << device() << device();
  return text.str();
}

PendingRequest pending_request(const std::string &poll_identifier) {
  PendingRequest request;
  request.certificate_name = "certificate-1";
  request.order_name = "order-1";
  request.poll_identifier = poll_identifier;
  return request;
}

bool contains(const std::string &text, const std::string &part) {
  return text.find(part) != std::string::npos;
}

std::unique_ptr<CertifierHandler> make_handler(CertifierSettings settings) {
  auto handler = CertifierHandler::create(std::move(settings));
  if (!handler) {
    throw std::runtime_error(handler.error().message);
  }
  return std::move(*handler);
}

// ---- against the demo CA ----

class CertifierDemoTest : public ::testing::Test {
protected:
  void SetUp() override {
    demo_ca::Options options;
    options.password = m_password;
    options.slow_delay = std::chrono::seconds(3);
    m_ca = std::make_unique<demo_ca::DemoCa>(options);
    m_ca->start();
    test_support::write_file(bundle(), m_ca->root_pem());
  }

  std::filesystem::path bundle() const { return m_folder / "root.pem"; }

  CertifierSettings settings() const {
    CertifierSettings settings;
    settings.api_host = m_ca->base_url();
    settings.credentials = {"demo", m_password};
    settings.http.tls_verification = TlsVerification::bundle_file;
    settings.http.ca_bundle = bundle();
    settings.http.timeout = std::chrono::seconds(10);
    return settings;
  }

  PollResult poll(Behaviour behaviour) {
    const std::string identifier =
        m_ca->add_request("request-1", m_key_and_csr.csr_der, behaviour);
    return make_handler(settings())->poll(pending_request(identifier));
  }

  test_support::TempDir m_folder;
  std::string m_password = random_password();
  test_support::KeyAndCsr m_key_and_csr =
      test_support::make_key_and_csr("host.example");
  std::unique_ptr<demo_ca::DemoCa> m_ca;
};

TEST_F(CertifierDemoTest, ApproveIssuesChainOfThree) {
  const PollResult result = poll(Behaviour::approve);
  ASSERT_EQ(result.status, PollStatus::issued) << result.message;
  EXPECT_TRUE(result.message.empty());
  EXPECT_FALSE(result.poll_identifier.has_value());
  const auto chain = cert_poll::x509::parse_pem_chain(result.chain_pem);
  ASSERT_TRUE(chain.has_value()) << chain.error().message;
  ASSERT_EQ(chain->size(), 3U);
  EXPECT_EQ(result.cert_raw, cert_poll::x509::encode_base64((*chain)[0].der()));
}

TEST_F(CertifierDemoTest, ApproveChainIsLeafFirst) {
  const PollResult result = poll(Behaviour::approve);
  ASSERT_EQ(result.status, PollStatus::issued) << result.message;
  const auto chain = cert_poll::x509::parse_pem_chain(result.chain_pem);
  ASSERT_TRUE(chain.has_value()) << chain.error().message;
  ASSERT_EQ(chain->size(), 3U);
  const auto request =
      cert_poll::x509::CertificateRequest::from_text(m_key_and_csr.csr_base64);
  ASSERT_TRUE(request.has_value()) << request.error().message;
  EXPECT_TRUE(cert_poll::x509::same_public_key((*chain)[0], *request));
  EXPECT_EQ(X509_check_issued((*chain)[1].get(), (*chain)[0].get()), X509_V_OK);
  EXPECT_EQ(X509_check_issued((*chain)[2].get(), (*chain)[1].get()), X509_V_OK);
  EXPECT_EQ(X509_check_issued((*chain)[2].get(), (*chain)[2].get()), X509_V_OK);
}

TEST_F(CertifierDemoTest, ApproveChainHas64ColumnLines) {
  const PollResult result = poll(Behaviour::approve);
  ASSERT_EQ(result.status, PollStatus::issued) << result.message;
  std::istringstream lines(result.chain_pem);
  std::string line;
  std::string previous;
  int begin_lines = 0;
  while (std::getline(lines, line)) {
    if (line.starts_with("-----BEGIN")) {
      ++begin_lines;
    } else if (line.starts_with("-----END")) {
      EXPECT_LE(previous.size(), 64U);
    } else if (!previous.starts_with("-----BEGIN") && !previous.empty()) {
      EXPECT_EQ(previous.size(), 64U) << previous;
    }
    previous = line;
  }
  EXPECT_EQ(begin_lines, 3);
  EXPECT_TRUE(result.chain_pem.ends_with("-----END CERTIFICATE-----\n"));
}

TEST_F(CertifierDemoTest, ApproveSendsValidCredentials) {
  const PollResult result = poll(Behaviour::approve);
  ASSERT_EQ(result.status, PollStatus::issued) << result.message;
  const auto received = m_ca->received();
  // request, certificate, then two CA resources and their certificates
  EXPECT_EQ(received.size(), 6U);
  for (const demo_ca::ReceivedRequest &request : received) {
    EXPECT_TRUE(request.credentials_valid) << request.path;
  }
}

// Checks that `result` contains the demo CA's full chain for `csr`: leaf,
// intermediate and root, each issued by the next.
void expect_full_chain(const PollResult &result,
                       const test_support::KeyAndCsr &csr) {
  ASSERT_EQ(result.status, PollStatus::issued) << result.message;
  const auto chain = cert_poll::x509::parse_pem_chain(result.chain_pem);
  ASSERT_TRUE(chain.has_value()) << chain.error().message;
  ASSERT_EQ(chain->size(), 3U);
  EXPECT_EQ(result.cert_raw, cert_poll::x509::encode_base64((*chain)[0].der()));
  const auto request =
      cert_poll::x509::CertificateRequest::from_text(csr.csr_base64);
  ASSERT_TRUE(request.has_value()) << request.error().message;
  EXPECT_TRUE(cert_poll::x509::same_public_key((*chain)[0], *request));
  EXPECT_EQ(X509_check_issued((*chain)[1].get(), (*chain)[0].get()), X509_V_OK);
  EXPECT_EQ(X509_check_issued((*chain)[2].get(), (*chain)[1].get()), X509_V_OK);
  EXPECT_EQ(X509_check_issued((*chain)[2].get(), (*chain)[2].get()), X509_V_OK);
}

TEST_F(CertifierDemoTest, SecondIssueCostsTwoRequests) {
  const std::string first =
      m_ca->add_request("request-1", m_key_and_csr.csr_der, Behaviour::approve);
  const std::string second =
      m_ca->add_request("request-2", m_key_and_csr.csr_der, Behaviour::approve);
  const auto handler = make_handler(settings());

  const PollResult first_result = handler->poll(pending_request(first));
  expect_full_chain(first_result, m_key_and_csr);
  // request, certificate, then two CA resources and their certificates
  EXPECT_EQ(m_ca->received().size(), 6U);
  EXPECT_EQ(handler->requests_sent(), 6U);

  const PollResult second_result = handler->poll(pending_request(second));
  expect_full_chain(second_result, m_key_and_csr);
  // request and certificate, because the issuers come from the cache
  EXPECT_EQ(m_ca->received().size(), 8U);
  EXPECT_EQ(handler->requests_sent(), 8U);
  EXPECT_NE(first_result.cert_raw, second_result.cert_raw);
}

TEST_F(CertifierDemoTest, NewHandlerFetchesIssuersAgain) {
  const std::string identifier =
      m_ca->add_request("request-1", m_key_and_csr.csr_der, Behaviour::approve);
  expect_full_chain(make_handler(settings())->poll(pending_request(identifier)),
                    m_key_and_csr);
  expect_full_chain(make_handler(settings())->poll(pending_request(identifier)),
                    m_key_and_csr);
  EXPECT_EQ(m_ca->received().size(), 12U);
}

TEST_F(CertifierDemoTest, ConcurrentPollsFetchIssuersOnce) {
  constexpr int requests = 16;
  std::vector<std::string> identifiers;
  for (int index = 0; index < requests; ++index) {
    identifiers.push_back(m_ca->add_request("request-" + std::to_string(index),
                                            m_key_and_csr.csr_der,
                                            Behaviour::approve));
  }
  const auto handler = make_handler(settings());
  std::vector<PollResult> results(requests);

  std::vector<std::thread> threads;
  for (int index = 0; index < requests; ++index) {
    threads.emplace_back([&, index] {
      results[static_cast<std::size_t>(index)] = handler->poll(
          pending_request(identifiers[static_cast<std::size_t>(index)]));
    });
  }
  for (std::thread &thread : threads) {
    thread.join();
  }

  for (int index = 0; index < requests; ++index) {
    SCOPED_TRACE("request-" + std::to_string(index));
    expect_full_chain(results[static_cast<std::size_t>(index)], m_key_and_csr);
  }
  // Each poll fetches its request and leaf. The two CA resources and their
  // certificates are fetched once for all polls.
  constexpr std::size_t expected = requests * 2 + 4;
  EXPECT_EQ(m_ca->received().size(), expected);
  EXPECT_EQ(handler->requests_sent(), expected);
}

TEST_F(CertifierDemoTest, RelativeIdentifierIsResolved) {
  const std::string identifier =
      m_ca->add_request("request-1", m_key_and_csr.csr_der, Behaviour::approve);
  const std::string path = identifier.substr(m_ca->base_url().size());
  ASSERT_TRUE(path.starts_with("/v1/"));
  const PollResult result =
      make_handler(settings())->poll(pending_request(path));
  EXPECT_EQ(result.status, PollStatus::issued) << result.message;
}

TEST_F(CertifierDemoTest, RejectIsRejected) {
  const PollResult result = poll(Behaviour::reject);
  EXPECT_EQ(result.status, PollStatus::rejected);
  EXPECT_FALSE(result.message.empty());
  EXPECT_TRUE(result.chain_pem.empty());
}

TEST_F(CertifierDemoTest, PendingIsPending) {
  const PollResult result = poll(Behaviour::pending);
  EXPECT_EQ(result.status, PollStatus::pending);
  EXPECT_TRUE(result.message.empty());
  EXPECT_FALSE(result.poll_identifier.has_value());
}

TEST_F(CertifierDemoTest, UnknownStatusFails) {
  const PollResult result = poll(Behaviour::unknown_status);
  EXPECT_EQ(result.status, PollStatus::failed);
  EXPECT_TRUE(contains(result.message, "'on-hold-forever'")) << result.message;
}

TEST_F(CertifierDemoTest, ServerErrorFails) {
  const PollResult result = poll(Behaviour::server_error);
  EXPECT_EQ(result.status, PollStatus::failed);
  EXPECT_TRUE(contains(result.message, "HTTP 500")) << result.message;
}

TEST_F(CertifierDemoTest, InvalidJsonFails) {
  const PollResult result = poll(Behaviour::invalid_json);
  EXPECT_EQ(result.status, PollStatus::failed);
  EXPECT_TRUE(contains(result.message, "invalid JSON")) << result.message;
}

TEST_F(CertifierDemoTest, MissingCertificateBase64Fails) {
  const PollResult result = poll(Behaviour::missing_certificate_base64);
  EXPECT_EQ(result.status, PollStatus::failed);
  EXPECT_TRUE(contains(result.message, "'certificateBase64'"))
      << result.message;
  EXPECT_TRUE(result.chain_pem.empty());
}

TEST_F(CertifierDemoTest, LeafOnlyIssuesOneCertificate) {
  const PollResult result = poll(Behaviour::leaf_only);
  ASSERT_EQ(result.status, PollStatus::issued) << result.message;
  const auto chain = cert_poll::x509::parse_pem_chain(result.chain_pem);
  ASSERT_TRUE(chain.has_value()) << chain.error().message;
  EXPECT_EQ(chain->size(), 1U);
}

TEST_F(CertifierDemoTest, WrongKeyIsStillIssued) {
  const PollResult result = poll(Behaviour::wrong_key);
  ASSERT_EQ(result.status, PollStatus::issued) << result.message;
  const auto chain = cert_poll::x509::parse_pem_chain(result.chain_pem);
  ASSERT_TRUE(chain.has_value()) << chain.error().message;
  const auto request =
      cert_poll::x509::CertificateRequest::from_text(m_key_and_csr.csr_base64);
  ASSERT_TRUE(request.has_value()) << request.error().message;
  EXPECT_FALSE(cert_poll::x509::same_public_key((*chain)[0], *request));
}

TEST_F(CertifierDemoTest, OtherOriginGetsNoRequest) {
  demo_ca::Options options;
  options.password = m_password;
  demo_ca::DemoCa other(options);
  other.start();
  const std::string identifier =
      other.add_request("request-1", m_key_and_csr.csr_der, Behaviour::approve);

  const PollResult result =
      make_handler(settings())->poll(pending_request(identifier));
  EXPECT_EQ(result.status, PollStatus::failed);
  EXPECT_TRUE(contains(result.message, "outside api_host")) << result.message;
  EXPECT_TRUE(other.received().empty());
}

TEST_F(CertifierDemoTest, WrongBundleFailsWithTls) {
  demo_ca::Options options;
  options.password = m_password;
  demo_ca::DemoCa other(options);
  test_support::write_file(bundle(), other.root_pem());
  const PollResult result = poll(Behaviour::approve);
  EXPECT_EQ(result.status, PollStatus::failed);
  EXPECT_TRUE(contains(result.message, "TLS")) << result.message;
  EXPECT_TRUE(m_ca->received().empty());
}

TEST_F(CertifierDemoTest, WrongPasswordFails) {
  const std::string identifier =
      m_ca->add_request("request-1", m_key_and_csr.csr_der, Behaviour::approve);
  CertifierSettings wrong = settings();
  wrong.credentials.password = "not-" + m_password;
  const PollResult result =
      make_handler(std::move(wrong))->poll(pending_request(identifier));
  EXPECT_EQ(result.status, PollStatus::failed);
  EXPECT_TRUE(contains(result.message, "HTTP 401")) << result.message;
  EXPECT_FALSE(contains(result.message, m_password));
}

TEST_F(CertifierDemoTest, SlowCaTimesOut) {
  const std::string identifier =
      m_ca->add_request("request-1", m_key_and_csr.csr_der, Behaviour::slow);
  CertifierSettings slow = settings();
  slow.http.timeout = std::chrono::seconds(1);
  const PollResult result =
      make_handler(std::move(slow))->poll(pending_request(identifier));
  EXPECT_EQ(result.status, PollStatus::failed);
  EXPECT_TRUE(contains(result.message, "timed out")) << result.message;
}

// ---- issuer links, against a server of our own ----

// An HTTPS server on 127.0.0.1 that serves Certifier-like JSON resources
// whose issuer links loop or never end.
class LinkServer {
public:
  LinkServer()
      : m_identity(make_self_signed("link-server")),
        m_leaf(make_self_signed("leaf")), m_server(m_identity) {
    add_routes();
    m_server.start();
  }
  LinkServer(const LinkServer &) = delete;
  LinkServer &operator=(const LinkServer &) = delete;

  std::string url(const std::string &path) const { return m_server.url(path); }
  int certificate_fetches() const { return m_certificate_fetches; }
  int root_ca_fetches() const { return m_root_ca_fetches; }
  int flaky_ca_fetches() const { return m_flaky_ca_fetches; }

  CertifierSettings settings(const test_support::TempDir &folder) const {
    test_support::write_file(folder / "link.pem", m_identity.pem);

    CertifierSettings settings;
    settings.api_host = url("");
    settings.credentials = {"link-user", random_password()};
    settings.http.tls_verification = TlsVerification::bundle_file;
    settings.http.ca_bundle = folder / "link.pem";
    settings.http.timeout = std::chrono::seconds(10);
    return settings;
  }

private:
  using Json = nlohmann::json;

  static void reply(httplib::Response &response, const Json &body) {
    response.set_content(body.dump(), "application/json");
  }
  static std::string base64(const cert_poll::x509::Bytes &der) {
    return cert_poll::x509::encode_base64(der);
  }

  void add_routes() {
    httplib::Server &routes = m_server.routes();

    // The root's certificate names the root CA resource as its issuer.
    routes.Get("/v1/requests/self-issuer", [](const auto &, auto &response) {
      reply(response,
            {{"status", "accepted"}, {"certificate", "/v1/certificates/leaf"}});
    });
    routes.Get("/v1/certificates/leaf", [this](const auto &, auto &response) {
      ++m_certificate_fetches;
      reply(response,
            {{"certificateBase64", base64(m_leaf.der)},
             {"issuer", url("/v1/cas/root")}});
    });
    routes.Get("/v1/cas/root", [this](const auto &, auto &response) {
      ++m_root_ca_fetches;
      reply(response,
            {{"certificates", {{"active", url("/v1/certificates/root")}}}});
    });
    routes.Get("/v1/certificates/root", [this](const auto &, auto &response) {
      ++m_certificate_fetches;
      reply(response,
            {{"certificateBase64", base64(m_identity.der)},
             {"issuerCa", url("/v1/cas/root")}});
    });

    // Every CA resource has a new URL and a new certificate.
    routes.Get("/v1/requests/endless", [](const auto &, auto &response) {
      reply(response,
            {{"status", "accepted"},
             {"certificate", "/v1/certificates/endless-0"}});
    });
    routes.Get(R"(/v1/certificates/endless-(\d+))",
               [this](const auto &request, auto &response) {
                 ++m_certificate_fetches;
                 const std::string number = request.matches[1];
                 const std::string fake_der = "certificate " + number;
                 reply(response,
                       {{"certificateBase64",
                         base64(cert_poll::x509::Bytes(fake_der.begin(),
                                                       fake_der.end()))},
                        {"issuer", "/v1/cas/endless-" + number}});
               });
    routes.Get(
        R"(/v1/cas/endless-(\d+))", [](const auto &request, auto &response) {
          const int next = std::stoi(request.matches[1]) + 1;
          reply(response,
                {{"certificates",
                  {{"active",
                    "/v1/certificates/endless-" + std::to_string(next)}}}});
        });

    // Each CA resource has a new URL but serves the same root certificate.
    routes.Get("/v1/requests/alias", [](const auto &, auto &response) {
      reply(response,
            {{"status", "accepted"},
             {"certificate", "/v1/certificates/alias-leaf"}});
    });
    routes.Get("/v1/certificates/alias-leaf",
               [this](const auto &, auto &response) {
                 ++m_certificate_fetches;
                 reply(response,
                       {{"certificateBase64", base64(m_leaf.der)},
                        {"issuer", "/v1/cas/alias-0"}});
               });
    routes.Get(R"(/v1/cas/alias-(\d+))",
               [](const auto &request, auto &response) {
                 const std::string number = request.matches[1];
                 reply(response,
                       {{"certificates",
                         {{"active", "/v1/certificates/alias-" + number}}}});
               });
    routes.Get(R"(/v1/certificates/alias-(\d+))",
               [this](const auto &request, auto &response) {
                 ++m_certificate_fetches;
                 const int next = std::stoi(request.matches[1]) + 1;
                 reply(response,
                       {{"certificateBase64", base64(m_identity.der)},
                        {"issuer", "/v1/cas/alias-" + std::to_string(next)}});
               });

    // The CA resource fails with HTTP 500 the first time only.
    routes.Get("/v1/requests/flaky", [](const auto &, auto &response) {
      reply(response,
            {{"status", "accepted"},
             {"certificate", "/v1/certificates/flaky-leaf"}});
    });
    routes.Get("/v1/certificates/flaky-leaf",
               [this](const auto &, auto &response) {
                 ++m_certificate_fetches;
                 reply(response,
                       {{"certificateBase64", base64(m_leaf.der)},
                        {"issuer", "/v1/cas/flaky"}});
               });
    routes.Get("/v1/cas/flaky", [this](const auto &, auto &response) {
      if (m_flaky_ca_fetches++ == 0) {
        response.status = 500;
        response.set_content("temporarily broken", "text/plain");
        return;
      }
      reply(response,
            {{"certificates", {{"active", url("/v1/certificates/root")}}}});
    });

    // The certificate link points to another origin.
    routes.Get("/v1/requests/foreign", [](const auto &, auto &response) {
      reply(response,
            {{"status", "accepted"},
             {"certificate", "https://[::1]:1/v1/certificates/leaf"}});
    });
  }

  TestCertificate m_identity;
  TestCertificate m_leaf;
  TestServer m_server;
  std::atomic<int> m_certificate_fetches{0};
  std::atomic<int> m_root_ca_fetches{0};
  std::atomic<int> m_flaky_ca_fetches{0};
};

TEST(CertifierChain, SelfNamedRootEndsChain) {
  test_support::TempDir folder;
  LinkServer server;
  const PollResult result =
      make_handler(server.settings(folder))
          ->poll(pending_request("/v1/requests/self-issuer"));
  ASSERT_EQ(result.status, PollStatus::issued) << result.message;
  const auto chain = cert_poll::x509::parse_pem_chain(result.chain_pem);
  ASSERT_TRUE(chain.has_value()) << chain.error().message;
  EXPECT_EQ(chain->size(), 2U);
  EXPECT_EQ(server.certificate_fetches(), 2);
  EXPECT_EQ(server.root_ca_fetches(), 1);
}

TEST(CertifierChain, RepeatedCertificateEndsChain) {
  test_support::TempDir folder;
  LinkServer server;
  const PollResult result =
      make_handler(server.settings(folder))
          ->poll(pending_request(server.url("/v1/requests/alias")));
  ASSERT_EQ(result.status, PollStatus::issued) << result.message;
  const auto chain = cert_poll::x509::parse_pem_chain(result.chain_pem);
  ASSERT_TRUE(chain.has_value()) << chain.error().message;
  EXPECT_EQ(chain->size(), 2U);
}

TEST(CertifierChain, EndlessChainIsBounded) {
  test_support::TempDir folder;
  LinkServer server;
  const PollResult result = make_handler(server.settings(folder))
                                ->poll(pending_request("/v1/requests/endless"));
  EXPECT_EQ(result.status, PollStatus::failed);
  EXPECT_TRUE(contains(result.message, "longer than 8")) << result.message;
  EXPECT_EQ(server.certificate_fetches(), CertifierHandler::max_chain_length);
}

TEST(CertifierChain, FailedIssuerFetchIsNotCached) {
  test_support::TempDir folder;
  LinkServer server;
  const auto handler = make_handler(server.settings(folder));

  const PollResult failed =
      handler->poll(pending_request("/v1/requests/flaky"));
  EXPECT_EQ(failed.status, PollStatus::failed);
  EXPECT_TRUE(contains(failed.message, "issuer CA resource")) << failed.message;
  EXPECT_TRUE(contains(failed.message, "HTTP 500")) << failed.message;

  const PollResult issued =
      handler->poll(pending_request("/v1/requests/flaky"));
  ASSERT_EQ(issued.status, PollStatus::issued) << issued.message;
  const auto chain = cert_poll::x509::parse_pem_chain(issued.chain_pem);
  ASSERT_TRUE(chain.has_value()) << chain.error().message;
  EXPECT_EQ(chain->size(), 2U);
  EXPECT_EQ(server.flaky_ca_fetches(), 2);

  // A third poll takes the CA resource and the root certificate from the
  // cache, so only the request and the leaf are fetched.
  const int certificates_before = server.certificate_fetches();
  const PollResult again = handler->poll(pending_request("/v1/requests/flaky"));
  ASSERT_EQ(again.status, PollStatus::issued) << again.message;
  EXPECT_EQ(server.flaky_ca_fetches(), 2);
  EXPECT_EQ(server.certificate_fetches(), certificates_before + 1);
  EXPECT_EQ(server.root_ca_fetches(), 1);
}

TEST(CertifierChain, ForeignCertificateLinkFails) {
  test_support::TempDir folder;
  LinkServer server;
  const PollResult result = make_handler(server.settings(folder))
                                ->poll(pending_request("/v1/requests/foreign"));
  EXPECT_EQ(result.status, PollStatus::failed);
  EXPECT_TRUE(contains(result.message, "outside api_host")) << result.message;
  EXPECT_EQ(server.certificate_fetches(), 0);
}

// ---- read_certifier_settings ----

cert_poll::EnvironmentLookup
environment_of(std::map<std::string, std::string> variables) {
  return [variables](const std::string &name) -> std::optional<std::string> {
    const auto found = variables.find(name);
    if (found == variables.end()) {
      return std::nullopt;
    }
    return found->second;
  };
}

cert_poll::Result<CertifierSettings>
read_settings(const std::string &section_body,
              const std::map<std::string, std::string> &variables = {}) {
  const auto ini =
      cert_poll::IniFile::parse("[CAhandler]\n" + section_body, "acme_srv.cfg");
  if (!ini) {
    throw std::runtime_error(ini.error().message);
  }
  return cert_poll::read_certifier_settings(
      *ini, cert_poll::ProxyList(), environment_of(variables));
}

const std::string credentials_lines = "api_user: poll-user\n"
                                      "api_password: fake-password\n";

TEST(CertifierSettings, RejectsBundleWithoutCertificate) {
  test_support::TempDir folder;
  test_support::write_file(folder / "bundle.pem", "not a certificate\n");

  const auto from_file =
      read_settings("api_host: https://ca.example\n" + credentials_lines +
                    "ca_bundle: " + (folder / "bundle.pem").string() + "\n");
  const auto from_folder =
      read_settings("api_host: https://ca.example\n" + credentials_lines +
                    "ca_bundle: " + folder.path().string() + "\n");

  ASSERT_FALSE(from_file.has_value());
  EXPECT_EQ(from_file.error().kind, cert_poll::ErrorKind::config);
  EXPECT_NE(from_file.error().message.find("contains no valid PEM certificate"),
            std::string::npos)
      << from_file.error().message;
  ASSERT_FALSE(from_folder.has_value());
  EXPECT_NE(from_folder.error().message.find("is not a readable file"),
            std::string::npos)
      << from_folder.error().message;
}

TEST(CertifierSettings, ReadsAllKeys) {
  test_support::TempDir folder;
  test_support::write_file(folder / "bundle.pem",
                           test_support::make_self_signed("bundle CA").pem);
  const auto settings =
      read_settings("api_host: https://ca.example:8443/\n" + credentials_lines +
                    "ca_name: issuing-ca\n"
                    "ca_bundle: " +
                    (folder / "bundle.pem").string() +
                    "\n"
                    "request_timeout: 7\n");
  ASSERT_TRUE(settings.has_value()) << settings.error().message;
  EXPECT_EQ(settings->api_host, "https://ca.example:8443");
  EXPECT_EQ(settings->credentials.user, "poll-user");
  EXPECT_EQ(settings->credentials.password, "fake-password");
  EXPECT_EQ(settings->ca_name, "issuing-ca");
  EXPECT_EQ(settings->http.tls_verification, TlsVerification::bundle_file);
  EXPECT_EQ(settings->http.ca_bundle, folder / "bundle.pem");
  EXPECT_EQ(settings->http.timeout, std::chrono::seconds(7));
}

TEST(CertifierSettings, AppliesDefaults) {
  const auto settings =
      read_settings("api_host: https://ca.example\n" + credentials_lines);
  ASSERT_TRUE(settings.has_value()) << settings.error().message;
  EXPECT_EQ(settings->http.tls_verification, TlsVerification::system_store);
  EXPECT_EQ(settings->http.timeout, std::chrono::seconds(20));
  EXPECT_TRUE(settings->ca_name.empty());
}

TEST(CertifierSettings, ReadsCredentialsFromEnvironment) {
  const auto settings =
      read_settings("api_host: https://ca.example\n"
                    "api_user_variable: CP_USER\n"
                    "api_password_variable: CP_PASSWORD\n",
                    {{"CP_USER", "env-user"}, {"CP_PASSWORD", "env-password"}});
  ASSERT_TRUE(settings.has_value()) << settings.error().message;
  EXPECT_EQ(settings->credentials.user, "env-user");
  EXPECT_EQ(settings->credentials.password, "env-password");
}

TEST(CertifierSettings, DirectValueWinsOverVariable) {
  const auto settings =
      read_settings("api_host: https://ca.example\n" + credentials_lines +
                        "api_password_variable: CP_PASSWORD\n",
                    {{"CP_PASSWORD", "env-password"}});
  ASSERT_TRUE(settings.has_value()) << settings.error().message;
  EXPECT_EQ(settings->credentials.password, "fake-password");
}

TEST(CertifierSettings, UnsetVariableIsNamed) {
  const auto settings = read_settings("api_host: https://ca.example\n"
                                      "api_user: poll-user\n"
                                      "api_password_variable: CP_PASSWORD\n");
  ASSERT_FALSE(settings.has_value());
  EXPECT_EQ(settings.error().kind, ErrorKind::config);
  EXPECT_TRUE(contains(settings.error().message, "'CP_PASSWORD'"))
      << settings.error().message;
}

TEST(CertifierSettings, EmptyVariableIsNamed) {
  const auto settings = read_settings("api_host: https://ca.example\n"
                                      "api_user_variable: CP_USER\n"
                                      "api_password: fake-password\n",
                                      {{"CP_USER", ""}});
  ASSERT_FALSE(settings.has_value());
  EXPECT_EQ(settings.error().kind, ErrorKind::config);
  EXPECT_TRUE(contains(settings.error().message, "'CP_USER'"))
      << settings.error().message;
}

TEST(CertifierSettings, MissingUserFails) {
  const auto settings = read_settings("api_host: https://ca.example\n"
                                      "api_password: fake-password\n");
  ASSERT_FALSE(settings.has_value());
  EXPECT_EQ(settings.error().kind, ErrorKind::config);
  EXPECT_TRUE(contains(settings.error().message, "'api_user'"))
      << settings.error().message;
}

TEST(CertifierSettings, MissingPasswordFails) {
  const auto settings = read_settings("api_host: https://ca.example\n"
                                      "api_user: poll-user\n");
  ASSERT_FALSE(settings.has_value());
  EXPECT_EQ(settings.error().kind, ErrorKind::config);
  EXPECT_TRUE(contains(settings.error().message, "'api_password'"))
      << settings.error().message;
}

TEST(CertifierSettings, MissingApiHostFails) {
  const auto settings = read_settings(credentials_lines);
  ASSERT_FALSE(settings.has_value());
  EXPECT_EQ(settings.error().kind, ErrorKind::config);
  EXPECT_TRUE(contains(settings.error().message, "missing 'api_host'"))
      << settings.error().message;
}

TEST(CertifierSettings, InvalidApiHostFails) {
  for (const std::string host :
       {"ftp://ca.example", "ca.example", "https://u:p@ca.example"}) {
    const auto settings =
        read_settings("api_host: " + host + "\n" + credentials_lines);
    ASSERT_FALSE(settings.has_value()) << host;
    EXPECT_EQ(settings.error().kind, ErrorKind::config) << host;
  }
}

TEST(CertifierSettings, CaBundleFlags) {
  const std::vector<std::pair<std::string, TlsVerification>> cases = {
      {"True", TlsVerification::system_store},
      {"yes", TlsVerification::system_store},
      {"False", TlsVerification::disabled},
      {"off", TlsVerification::disabled},
  };
  for (const auto &[value, expected] : cases) {
    const auto settings =
        read_settings("api_host: https://ca.example\n" + credentials_lines +
                      "ca_bundle: " + value + "\n");
    ASSERT_TRUE(settings.has_value())
        << value << ": " << settings.error().message;
    EXPECT_EQ(settings->http.tls_verification, expected) << value;
  }
}

TEST(CertifierSettings, MissingBundleFileIsNamed) {
  test_support::TempDir folder;
  const std::string path = (folder / "absent.pem").string();
  const auto settings =
      read_settings("api_host: https://ca.example\n" + credentials_lines +
                    "ca_bundle: " + path + "\n");
  ASSERT_FALSE(settings.has_value());
  EXPECT_EQ(settings.error().kind, ErrorKind::config);
  EXPECT_TRUE(contains(settings.error().message, "'" + path + "'"))
      << settings.error().message;
}

TEST(CertifierSettings, InvalidRequestTimeoutFails) {
  for (const std::string value :
       {"0", "-5", "abc", "1.5", "20s", "99999999999"}) {
    const auto settings =
        read_settings("api_host: https://ca.example\n" + credentials_lines +
                      "request_timeout: " + value + "\n");
    ASSERT_FALSE(settings.has_value()) << value;
    EXPECT_EQ(settings.error().kind, ErrorKind::config) << value;
    EXPECT_TRUE(contains(settings.error().message, "'" + value + "'"))
        << settings.error().message;
  }
}

TEST(CertifierSettings, ErrorsNeverContainPassword) {
  const auto settings =
      read_settings("api_host: ftp://ca.example\n" + credentials_lines);
  ASSERT_FALSE(settings.has_value());
  EXPECT_FALSE(contains(settings.error().message, "fake-password"));
}

} // namespace
