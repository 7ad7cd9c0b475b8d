// SPDX-License-Identifier: Apache-2.0
// Tests of the demo CA over real HTTPS on 127.0.0.1, with httplib's client
// verifying the server against the demo root.

#include "cert_poll/x509.hpp"

#include <chrono>
#include <csignal>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "demo_ca.hpp"
#include "support/test_support.hpp"

namespace {

using demo_ca::Behaviour;
using demo_ca::DemoCa;
using demo_ca::Options;
using Json = nlohmann::json;
using namespace std::chrono_literals;

constexpr const char *test_user = "demo";
constexpr const char *test_password = "fake-test-password";

enum class Credentials { valid, wrong, none };

struct HttpResult {
  int status = 0; // 0 when the request failed without a response
  std::string body;
  std::string content_type;
};

Options test_options() {
  Options options;
  options.password = test_password;
  return options;
}

std::vector<unsigned char> decode(const std::string &base64) {
  auto bytes = cert_poll::x509::decode_base64(base64);
  if (!bytes) {
    ADD_FAILURE() << "invalid base64: " << bytes.error().message;
    return {};
  }
  return *bytes;
}

// The certificate's public key compared with the CSR's, with OpenSSL
// directly, so that the check does not depend on the code under test.
bool key_matches_csr(const std::vector<unsigned char> &certificate_der,
                     const std::vector<unsigned char> &csr_der) {
  const unsigned char *cursor = certificate_der.data();
  std::unique_ptr<X509, decltype(&X509_free)> certificate(
      d2i_X509(nullptr, &cursor, static_cast<long>(certificate_der.size())),
      X509_free);
  cursor = csr_der.data();
  std::unique_ptr<X509_REQ, decltype(&X509_REQ_free)> csr(
      d2i_X509_REQ(nullptr, &cursor, static_cast<long>(csr_der.size())),
      X509_REQ_free);
  if (certificate == nullptr || csr == nullptr) {
    ADD_FAILURE() << "certificate or CSR does not parse";
    return false;
  }
  return EVP_PKEY_eq(X509_get0_pubkey(certificate.get()),
                     X509_REQ_get0_pubkey(csr.get())) == 1;
}

bool has_dns_name(const std::vector<unsigned char> &certificate_der,
                  const std::string &name) {
  const unsigned char *cursor = certificate_der.data();
  std::unique_ptr<X509, decltype(&X509_free)> certificate(
      d2i_X509(nullptr, &cursor, static_cast<long>(certificate_der.size())),
      X509_free);
  if (certificate == nullptr) {
    return false;
  }
  return X509_check_host(certificate.get(),
                         name.c_str(),
                         name.size(),
                         X509_CHECK_FLAG_NO_WILDCARDS,
                         nullptr) == 1;
}

class DemoCaTest : public ::testing::Test {
protected:
  void SetUp() override { start(test_options()); }

  void start(Options options) {
    m_ca.reset();
    m_ca = std::make_unique<DemoCa>(std::move(options));
    m_ca->start();
    test_support::write_file(m_dir / "root.pem", m_ca->root_pem());
  }

  std::unique_ptr<httplib::SSLClient>
  make_client(Credentials credentials = Credentials::valid) const {
    auto client =
        std::make_unique<httplib::SSLClient>("127.0.0.1", m_ca->port());
    client->set_ca_cert_path((m_dir / "root.pem").string());
    client->enable_server_certificate_verification(true);
    client->set_read_timeout(30s);
    if (credentials == Credentials::valid) {
      client->set_basic_auth(test_user, test_password);
    } else if (credentials == Credentials::wrong) {
      client->set_basic_auth(test_user, "not-the-password");
    }
    return client;
  }

  // Strips base_url() from an absolute URL the server returned.
  std::string path_of(const std::string &url) const {
    std::string base = m_ca->base_url();
    if (url.rfind(base, 0) != 0) {
      ADD_FAILURE() << "URL '" << url << "' is not below '" << base << "'";
      return url;
    }
    return url.substr(base.size());
  }

  HttpResult get(const std::string &url,
                 Credentials credentials = Credentials::valid) const {
    auto client = make_client(credentials);
    auto response = client->Get(path_of(url).c_str());
    if (!response) {
      return {};
    }
    return {response->status,
            response->body,
            response->get_header_value("Content-Type")};
  }

  HttpResult post(const std::string &path,
                  Credentials credentials = Credentials::valid) const {
    auto client = make_client(credentials);
    auto response = client->Post(path.c_str());
    if (!response) {
      return {};
    }
    return {response->status,
            response->body,
            response->get_header_value("Content-Type")};
  }

  // GETs a resource that must return 200 with JSON; null otherwise.
  Json get_json(const std::string &url) const {
    HttpResult result = get(url);
    EXPECT_EQ(result.status, 200) << url << ": " << result.body;
    Json body = Json::parse(result.body, nullptr, false);
    EXPECT_FALSE(body.is_discarded()) << url << ": " << result.body;
    return body.is_discarded() ? Json() : body;
  }

  std::string add(const std::string &id, Behaviour behaviour) {
    m_csr = test_support::make_key_and_csr(id + ".example");
    return m_ca->add_request(id, m_csr.csr_der, behaviour);
  }

  // Follows request -> certificate -> CA links and returns the DER of each
  // certificate, leaf first.
  std::vector<std::vector<unsigned char>> fetch_chain(const std::string &poll) {
    std::vector<std::vector<unsigned char>> chain;
    Json request = get_json(poll);
    std::string certificate_url = request.value("certificate", "");
    for (int depth = 0; depth < 5 && !certificate_url.empty(); ++depth) {
      Json certificate = get_json(certificate_url);
      chain.push_back(decode(certificate.value("certificateBase64", "")));
      std::string ca_url =
          certificate.value("issuer", certificate.value("issuerCa", ""));
      if (ca_url.empty()) {
        break;
      }
      certificate_url = get_json(ca_url)["certificates"].value("active", "");
    }
    return chain;
  }

  std::string write_pem(const std::string &name,
                        const std::vector<unsigned char> &der) {
    std::filesystem::path path = m_dir / name;
    test_support::write_file(path, cert_poll::x509::der_to_pem(der));
    return test_support::shell_quote(path.string());
  }

  test_support::TempDir m_dir;
  std::unique_ptr<DemoCa> m_ca;
  test_support::KeyAndCsr m_csr;
};

TEST_F(DemoCaTest, AcceptedRequestLinksToChain) {
  std::string poll = add("one", Behaviour::approve);

  auto chain = fetch_chain(poll);

  ASSERT_EQ(chain.size(), 3u);
  EXPECT_TRUE(key_matches_csr(chain[0], m_csr.csr_der));
  EXPECT_TRUE(has_dns_name(chain[0], "one.example"));
  std::string command = "openssl verify -CAfile " +
                        write_pem("root", chain[2]) + " -untrusted " +
                        write_pem("int", chain[1]) + " " +
                        write_pem("leaf", chain[0]) + " >/dev/null";
  EXPECT_EQ(test_support::run_command(command).exit_status, 0);
  EXPECT_EQ(cert_poll::x509::der_to_pem(chain[2]), m_ca->root_pem());
}

TEST_F(DemoCaTest, RequestResourceFields) {
  std::string poll = add("one", Behaviour::approve);

  HttpResult result = get(poll);
  Json body = Json::parse(result.body);

  EXPECT_EQ(result.content_type, "application/json");
  EXPECT_EQ(body.value("href", ""), poll);
  EXPECT_EQ(body.value("status", ""), "accepted");
  EXPECT_EQ(body.value("certificate", "")
                .rfind(m_ca->base_url() + "/v1/certificates/", 0),
            0u);
}

TEST_F(DemoCaTest, PollIdentifierFormat) {
  std::string poll = add("abc-1", Behaviour::pending);

  EXPECT_EQ(poll, m_ca->base_url() + "/v1/requests/abc-1");
  EXPECT_EQ(m_ca->base_url(),
            "https://127.0.0.1:" + std::to_string(m_ca->port()));
}

TEST_F(DemoCaTest, RepeatedGetSameCertificate) {
  std::string poll = add("one", Behaviour::approve);

  auto first = fetch_chain(poll);
  auto second = fetch_chain(poll);

  ASSERT_FALSE(first.empty());
  ASSERT_FALSE(second.empty());
  EXPECT_EQ(first[0], second[0]);
}

TEST_F(DemoCaTest, IntermediateUsesIssuerCa) {
  std::string poll = add("one", Behaviour::approve);
  Json leaf = get_json(get_json(poll).value("certificate", ""));
  Json issuing_ca = get_json(leaf.value("issuer", ""));

  Json intermediate = get_json(issuing_ca["certificates"].value("active", ""));
  Json root_ca = get_json(intermediate.value("issuerCa", ""));
  Json root = get_json(root_ca["certificates"].value("active", ""));

  EXPECT_FALSE(leaf.contains("issuerCa"));
  EXPECT_FALSE(intermediate.contains("issuer"));
  EXPECT_EQ(issuing_ca.value("status", ""), "active");
  EXPECT_EQ(root_ca.value("name", ""), "cert_poll demo root CA");
  EXPECT_FALSE(root.contains("issuer"));
  EXPECT_FALSE(root.contains("issuerCa"));
  EXPECT_TRUE(root.contains("certificateBase64"));
}

TEST_F(DemoCaTest, CasListsBothCas) {
  Json body = get_json(m_ca->base_url() + "/v1/cas");

  ASSERT_TRUE(body["cas"].is_array());
  ASSERT_EQ(body["cas"].size(), 2u);
  for (const Json &ca : body["cas"]) {
    EXPECT_EQ(ca.value("status", ""), "active");
    EXPECT_FALSE(ca.value("name", "").empty());
    EXPECT_EQ(get_json(ca.value("href", "")), ca);
    EXPECT_TRUE(get_json(ca["certificates"].value("active", ""))
                    .contains("certificateBase64"));
  }
}

TEST_F(DemoCaTest, PendingHasNoCertificate) {
  Json body = get_json(add("one", Behaviour::pending));

  EXPECT_EQ(body.value("status", ""), "pending");
  EXPECT_FALSE(body.contains("certificate"));
}

TEST_F(DemoCaTest, RejectedHasNoCertificate) {
  Json body = get_json(add("one", Behaviour::reject));

  EXPECT_EQ(body.value("status", ""), "rejected");
  EXPECT_FALSE(body.contains("certificate"));
}

TEST_F(DemoCaTest, UnknownStatusValue) {
  Json body = get_json(add("one", Behaviour::unknown_status));

  EXPECT_EQ(body.value("status", ""), "on-hold-forever");
  EXPECT_FALSE(body.contains("certificate"));
}

TEST_F(DemoCaTest, ServerErrorReturns500) {
  HttpResult result = get(add("one", Behaviour::server_error));

  EXPECT_EQ(result.status, 500);
}

TEST_F(DemoCaTest, InvalidJsonBody) {
  HttpResult result = get(add("one", Behaviour::invalid_json));

  EXPECT_EQ(result.status, 200);
  EXPECT_EQ(result.body, R"({"status": "acc)");
  EXPECT_TRUE(Json::parse(result.body, nullptr, false).is_discarded());
}

TEST_F(DemoCaTest, MissingCertificateBase64) {
  Json request = get_json(add("one", Behaviour::missing_certificate_base64));
  Json certificate = get_json(request.value("certificate", ""));

  EXPECT_EQ(request.value("status", ""), "accepted");
  EXPECT_FALSE(certificate.contains("certificateBase64"));
  EXPECT_TRUE(certificate.contains("issuer"));
}

TEST_F(DemoCaTest, LeafOnlyHasNoIssuer) {
  Json request = get_json(add("one", Behaviour::leaf_only));
  Json certificate = get_json(request.value("certificate", ""));

  EXPECT_EQ(request.value("status", ""), "accepted");
  EXPECT_TRUE(certificate.contains("certificateBase64"));
  EXPECT_FALSE(certificate.contains("issuer"));
  EXPECT_FALSE(certificate.contains("issuerCa"));
}

TEST_F(DemoCaTest, WrongKeyDiffersFromCsr) {
  auto chain = fetch_chain(add("one", Behaviour::wrong_key));

  ASSERT_EQ(chain.size(), 3u);
  EXPECT_FALSE(key_matches_csr(chain[0], m_csr.csr_der));
  EXPECT_TRUE(has_dns_name(chain[0], "one.example"));
}

TEST_F(DemoCaTest, WrongKeyThenApproveResigns) {
  std::string poll = add("one", Behaviour::wrong_key);
  auto wrong = fetch_chain(poll);

  m_ca->set_behaviour("one", Behaviour::approve);
  auto right = fetch_chain(poll);

  ASSERT_FALSE(wrong.empty());
  ASSERT_FALSE(right.empty());
  EXPECT_FALSE(key_matches_csr(wrong[0], m_csr.csr_der));
  EXPECT_TRUE(key_matches_csr(right[0], m_csr.csr_der));
}

TEST_F(DemoCaTest, MissingCredentialsGet401) {
  std::string poll = add("one", Behaviour::approve);
  m_ca->clear_received();

  HttpResult result = get(poll, Credentials::none);
  auto received = m_ca->received();

  EXPECT_EQ(result.status, 401);
  EXPECT_FALSE(Json::parse(result.body, nullptr, false).is_discarded());
  ASSERT_EQ(received.size(), 1u);
  EXPECT_EQ(received[0].method, "GET");
  EXPECT_EQ(received[0].path, "/v1/requests/one");
  EXPECT_FALSE(received[0].had_authorization);
  EXPECT_FALSE(received[0].credentials_valid);
}

TEST_F(DemoCaTest, WrongPasswordGets401) {
  std::string poll = add("one", Behaviour::approve);
  m_ca->clear_received();

  HttpResult result = get(poll, Credentials::wrong);
  auto received = m_ca->received();

  EXPECT_EQ(result.status, 401);
  ASSERT_EQ(received.size(), 1u);
  EXPECT_TRUE(received[0].had_authorization);
  EXPECT_FALSE(received[0].credentials_valid);
}

TEST_F(DemoCaTest, ValidCredentialsRecorded) {
  std::string poll = add("one", Behaviour::pending);
  m_ca->clear_received();

  get(poll);
  auto received = m_ca->received();

  ASSERT_EQ(received.size(), 1u);
  EXPECT_TRUE(received[0].had_authorization);
  EXPECT_TRUE(received[0].credentials_valid);
}

TEST_F(DemoCaTest, CasRequiresCredentials) {
  HttpResult result = get(m_ca->base_url() + "/v1/cas", Credentials::none);

  EXPECT_EQ(result.status, 401);
}

TEST_F(DemoCaTest, UnknownIdsGet404) {
  std::string base = m_ca->base_url();

  EXPECT_EQ(get(base + "/v1/requests/nobody").status, 404);
  EXPECT_EQ(get(base + "/v1/certificates/leaf-999").status, 404);
  EXPECT_EQ(get(base + "/v1/cas/nobody").status, 404);
  EXPECT_EQ(get(base + "/elsewhere").status, 404);
}

TEST_F(DemoCaTest, NotFoundBodyIsJson) {
  HttpResult result = get(m_ca->base_url() + "/v1/requests/nobody");

  EXPECT_EQ(result.content_type, "application/json");
  EXPECT_TRUE(Json::parse(result.body, nullptr, false).contains("error"));
}

TEST_F(DemoCaTest, AdminApproveFlipsPending) {
  std::string poll = add("one", Behaviour::pending);
  ASSERT_EQ(get_json(poll).value("status", ""), "pending");

  HttpResult result = post("/demo/requests/one/approve");
  Json body = get_json(poll);

  EXPECT_EQ(result.status, 200);
  EXPECT_EQ(Json::parse(result.body).value("behaviour", ""), "approve");
  EXPECT_EQ(body.value("status", ""), "accepted");
  EXPECT_TRUE(body.contains("certificate"));
}

TEST_F(DemoCaTest, AdminRejectAndPending) {
  std::string poll = add("one", Behaviour::approve);

  EXPECT_EQ(post("/demo/requests/one/reject").status, 200);
  EXPECT_EQ(get_json(poll).value("status", ""), "rejected");
  EXPECT_EQ(post("/demo/requests/one/pending").status, 200);
  EXPECT_EQ(get_json(poll).value("status", ""), "pending");
}

TEST_F(DemoCaTest, AdminRequiresCredentials) {
  std::string poll = add("one", Behaviour::pending);

  HttpResult result = post("/demo/requests/one/approve", Credentials::none);

  EXPECT_EQ(result.status, 401);
  EXPECT_EQ(get_json(poll).value("status", ""), "pending");
}

TEST_F(DemoCaTest, AdminUnknownIdGets404) {
  EXPECT_EQ(post("/demo/requests/nobody/approve").status, 404);
}

TEST_F(DemoCaTest, SetBehaviourChangesStatus) {
  std::string poll = add("one", Behaviour::pending);

  m_ca->set_behaviour("one", Behaviour::reject);

  EXPECT_EQ(get_json(poll).value("status", ""), "rejected");
}

TEST_F(DemoCaTest, SetBehaviourUnknownIdThrows) {
  EXPECT_THROW(m_ca->set_behaviour("nobody", Behaviour::approve),
               std::invalid_argument);
}

TEST_F(DemoCaTest, InvalidCsrRejected) {
  std::vector<unsigned char> garbage{0x30, 0x03, 0x02, 0x01, 0x01};

  EXPECT_THROW(m_ca->add_request("one", garbage, Behaviour::approve),
               std::invalid_argument);
}

TEST_F(DemoCaTest, InvalidIdRejected) {
  auto csr = test_support::make_key_and_csr("one.example");

  EXPECT_THROW(m_ca->add_request("a/b", csr.csr_der, Behaviour::approve),
               std::invalid_argument);
  EXPECT_THROW(m_ca->add_request("", csr.csr_der, Behaviour::approve),
               std::invalid_argument);
  EXPECT_THROW(m_ca->add_request("a b", csr.csr_der, Behaviour::approve),
               std::invalid_argument);
}

TEST_F(DemoCaTest, ParallelClientsShareCertificate) {
  std::string poll = add("one", Behaviour::approve);
  constexpr int client_count = 32;
  std::vector<std::string> bodies(client_count);
  std::vector<std::thread> clients;

  for (int i = 0; i < client_count; ++i) {
    clients.emplace_back([&, i] { bodies[i] = get(poll).body; });
  }
  for (std::thread &client : clients) {
    client.join();
  }

  for (const std::string &body : bodies) {
    EXPECT_EQ(body, bodies[0]);
  }
  EXPECT_EQ(Json::parse(bodies[0]).value("status", ""), "accepted");
}

TEST_F(DemoCaTest, SlowAnswersAfterDelay) {
  Options options = test_options();
  options.slow_delay = 300ms;
  start(options);
  std::string poll = add("one", Behaviour::slow);

  auto began = std::chrono::steady_clock::now();
  Json body = get_json(poll);
  auto elapsed = std::chrono::steady_clock::now() - began;

  EXPECT_GE(elapsed, 300ms);
  EXPECT_EQ(body.value("status", ""), "accepted");
}

TEST_F(DemoCaTest, LatencyDelaysResponses) {
  Options options = test_options();
  options.latency = 200ms;
  start(options);

  auto began = std::chrono::steady_clock::now();
  HttpResult result = get(m_ca->base_url() + "/v1/cas");
  auto elapsed = std::chrono::steady_clock::now() - began;

  EXPECT_EQ(result.status, 200);
  EXPECT_GE(elapsed, 200ms);
}

TEST_F(DemoCaTest, StopIsPromptDuringSlowRequest) {
  Options options = test_options();
  options.slow_delay = 60s;
  start(options);
  std::string poll = add("one", Behaviour::slow);
  std::thread client([&] { get(poll); });
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (m_ca->received().empty() &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_FALSE(m_ca->received().empty());

  auto began = std::chrono::steady_clock::now();
  m_ca->stop();
  auto elapsed = std::chrono::steady_clock::now() - began;
  client.join();

  EXPECT_LT(elapsed, 3s);
}

TEST_F(DemoCaTest, StopIsPromptWithIdleKeepAlive) {
  auto client = make_client();
  client->set_keep_alive(true);
  auto response = client->Get("/v1/cas");
  ASSERT_TRUE(response);

  auto began = std::chrono::steady_clock::now();
  m_ca->stop();
  auto elapsed = std::chrono::steady_clock::now() - began;

  EXPECT_LT(elapsed, 3s);
}

TEST_F(DemoCaTest, RequestsReceivedCountsEveryRequest) {
  EXPECT_EQ(m_ca->requests_received(), 0U);

  get(m_ca->base_url() + "/v1/cas");
  get(m_ca->base_url() + "/v1/cas", Credentials::none);
  get(m_ca->base_url() + "/v1/requests/unknown");

  EXPECT_EQ(m_ca->requests_received(), 3U);
  EXPECT_EQ(m_ca->received().size(), 3U);
}

TEST_F(DemoCaTest, RequestsReceivedKeptByClear) {
  get(m_ca->base_url() + "/v1/cas");

  m_ca->clear_received();

  EXPECT_TRUE(m_ca->received().empty());
  EXPECT_EQ(m_ca->requests_received(), 1U);
}

TEST_F(DemoCaTest, RecordRequestsOffKeepsListEmpty) {
  Options options = test_options();
  options.record_requests = false;
  start(options);
  std::string poll = add("one", Behaviour::approve);

  HttpResult result = get(poll);
  get(m_ca->base_url() + "/v1/cas", Credentials::wrong);

  EXPECT_EQ(result.status, 200);
  EXPECT_TRUE(m_ca->received().empty());
  EXPECT_EQ(m_ca->requests_received(), 2U);
}

// Each client opens its own connection, and the latency occupies a worker
// thread for its whole duration, so the elapsed time shows how many
// connections the server serves at once.
TEST_F(DemoCaTest, OneWorkerThreadServesInTurn) {
  Options options = test_options();
  options.worker_threads = 1;
  options.latency = 200ms;
  start(options);
  constexpr int client_count = 3;

  auto began = std::chrono::steady_clock::now();
  std::vector<std::thread> clients;
  for (int i = 0; i < client_count; ++i) {
    clients.emplace_back([&] { get(m_ca->base_url() + "/v1/cas"); });
  }
  for (std::thread &client : clients) {
    client.join();
  }
  auto elapsed = std::chrono::steady_clock::now() - began;

  EXPECT_GE(elapsed, client_count * 200ms);
  EXPECT_EQ(m_ca->requests_received(), static_cast<unsigned>(client_count));
}

TEST_F(DemoCaTest, MoreWorkerThreadsServeAtOnce) {
  // 48 clients are more than the default of 32 threads, which would need
  // two rounds of latency, and more than httplib's listen backlog of 5,
  // which makes the clients that do not fit retransmit after about 1 s.
  // Either limit makes the requests take at least 2 s.
  constexpr int client_count = 48;
  Options options = test_options();
  options.worker_threads = client_count;
  options.latency = 1s;
  start(options);

  auto began = std::chrono::steady_clock::now();
  std::vector<int> statuses(client_count);
  std::vector<std::thread> clients;
  for (int i = 0; i < client_count; ++i) {
    clients.emplace_back(
        [&, i] { statuses[i] = get(m_ca->base_url() + "/v1/cas").status; });
  }
  for (std::thread &client : clients) {
    client.join();
  }
  auto elapsed = std::chrono::steady_clock::now() - began;

  EXPECT_LT(elapsed, 2s);
  for (int status : statuses) {
    EXPECT_EQ(status, 200);
  }
}

TEST(DemoCa, ZeroWorkerThreadsRejected) {
  Options options = test_options();
  options.worker_threads = 0;

  EXPECT_THROW(DemoCa ca(options), std::invalid_argument);
}

TEST(DemoCa, NonLoopbackHostRejected) {
  for (const char *host : {"192.0.2.1", "0.0.0.0", "::", "example.com", ""}) {
    Options options = test_options();
    options.host = host;
    EXPECT_THROW(DemoCa ca(options), std::invalid_argument) << host;
  }
}

TEST(DemoCa, LoopbackHostsAccepted) {
  for (const char *host : {"127.0.0.1", "127.1.2.3", "::1", "localhost"}) {
    Options options = test_options();
    options.host = host;
    EXPECT_NO_THROW(DemoCa ca(options)) << host;
  }
}

TEST(DemoCa, EmptyPasswordRejected) {
  Options options = test_options();
  options.password.clear();

  EXPECT_THROW(DemoCa ca(options), std::invalid_argument);
}

TEST(DemoCa, AddRequestBeforeStartThrows) {
  DemoCa ca(test_options());
  auto csr = test_support::make_key_and_csr("one.example");

  EXPECT_THROW(ca.add_request("one", csr.csr_der, Behaviour::approve),
               std::logic_error);
}

TEST(DemoCa, StopWithoutStart) {
  DemoCa ca(test_options());

  EXPECT_NO_THROW(ca.stop());
}

TEST(DemoCa, BehaviourNamesRoundTrip) {
  for (Behaviour behaviour : {Behaviour::approve,
                              Behaviour::reject,
                              Behaviour::pending,
                              Behaviour::unknown_status,
                              Behaviour::server_error,
                              Behaviour::invalid_json,
                              Behaviour::missing_certificate_base64,
                              Behaviour::leaf_only,
                              Behaviour::wrong_key,
                              Behaviour::slow}) {
    EXPECT_EQ(demo_ca::parse_behaviour(demo_ca::to_string(behaviour)),
              behaviour);
  }
}

TEST(DemoCa, ParseBehaviourRejectsUnknown) {
  EXPECT_THROW(demo_ca::parse_behaviour("approved"), std::invalid_argument);
}

// ---------------------------------------------------------------------------
// The demo_ca binary

// A demo_ca process started in the background by a shell wrapper that
// writes its pid and, once it exits, its exit status into `dir`.
class BinaryProcess {
public:
  BinaryProcess(const std::filesystem::path &dir, const std::string &args)
      : m_dir(dir) {
    std::string command = "( DEMO_CA_PASSWORD=" + std::string(test_password) +
                          " " + test_support::shell_quote(DEMO_CA_BINARY) +
                          " " + args + " 2>" + quoted("log") + " & echo $! >" +
                          quoted("pid") + "; wait $!; echo $? >" +
                          quoted("status") + ".tmp; mv " + quoted("status") +
                          ".tmp " + quoted("status") + " ) >/dev/null 2>&1 &";
    test_support::run_command(command);
    m_pid = std::stoi(wait_for("pid"));
  }

  ~BinaryProcess() {
    if (!std::filesystem::exists(m_dir / "status")) {
      ::kill(m_pid, SIGKILL);
    }
  }

  BinaryProcess(const BinaryProcess &) = delete;
  BinaryProcess &operator=(const BinaryProcess &) = delete;

  // Returns the file's text once it exists and is not empty; empty after
  // 20 s.
  std::string wait_for(const std::string &name) const {
    std::filesystem::path path = m_dir / name;
    auto deadline = std::chrono::steady_clock::now() + 20s;
    while (std::chrono::steady_clock::now() < deadline) {
      if (std::filesystem::exists(path) &&
          std::filesystem::file_size(path) > 0) {
        return test_support::read_file(path);
      }
      std::this_thread::sleep_for(20ms);
    }
    return "";
  }

  void terminate() const { ::kill(m_pid, SIGTERM); }

private:
  std::string quoted(const std::string &name) const {
    return test_support::shell_quote((m_dir / name).string());
  }

  std::filesystem::path m_dir;
  int m_pid = 0;
};

TEST(DemoCaBinary, ServesRequestsFile) {
  test_support::TempDir dir;
  auto csr = test_support::make_key_and_csr("one.example");
  std::string url_safe = csr.csr_base64;
  for (char &c : url_safe) {
    if (c == '+') {
      c = '-';
    } else if (c == '/') {
      c = '_';
    }
  }
  url_safe.erase(url_safe.find_last_not_of('=') + 1);
  Json requests{{"requests",
                 {{{"id", "one"}, {"csr", url_safe}, {"behaviour", "approve"}},
                  {{"id", "two"}, {"csr", csr.csr_base64}}}}};
  test_support::write_file(dir / "requests.json", requests.dump());
  std::string args =
      "--listen 127.0.0.1:0 --requests " +
      test_support::shell_quote((dir / "requests.json").string()) +
      " --root-out " + test_support::shell_quote((dir / "root.pem").string()) +
      " --ready-file " + test_support::shell_quote((dir / "ready").string());

  BinaryProcess process(dir.path(), args);
  std::string ready = process.wait_for("ready");
  ASSERT_EQ(ready.rfind("https://127.0.0.1:", 0), 0u) << ready;
  ASSERT_EQ(ready.back(), '\n');
  int port = std::stoi(ready.substr(ready.rfind(':') + 1));
  httplib::SSLClient client("127.0.0.1", port);
  client.set_ca_cert_path((dir / "root.pem").string());
  client.enable_server_certificate_verification(true);
  client.set_basic_auth(test_user, test_password);
  auto one = client.Get("/v1/requests/one");
  auto two = client.Get("/v1/requests/two");
  process.terminate();
  std::string status = process.wait_for("status");
  std::string log = test_support::read_file(dir / "log");

  EXPECT_GT(port, 0);
  ASSERT_TRUE(one);
  EXPECT_EQ(Json::parse(one->body).value("status", ""), "accepted");
  ASSERT_TRUE(two);
  EXPECT_EQ(Json::parse(two->body).value("status", ""), "pending");
  EXPECT_EQ(status, "0\n");
  EXPECT_NE(log.find("GET /v1/requests/one 200"), std::string::npos) << log;
  EXPECT_EQ(log.find(test_password), std::string::npos);
  std::string credentials = std::string(test_user) + ":" + test_password;
  std::string token = cert_poll::x509::encode_base64(
      cert_poll::x509::Bytes(credentials.begin(), credentials.end()));
  EXPECT_EQ(log.find(token), std::string::npos);
}

TEST(DemoCaBinary, MissingPasswordExits2) {
  std::string command = "env -u DEMO_CA_PASSWORD " +
                        test_support::shell_quote(DEMO_CA_BINARY) +
                        " --listen 127.0.0.1:0 2>/dev/null";

  EXPECT_EQ(test_support::run_command(command).exit_status, 2);
}

TEST(DemoCaBinary, NonLoopbackListenExits2) {
  std::string command = "DEMO_CA_PASSWORD=" + std::string(test_password) + " " +
                        test_support::shell_quote(DEMO_CA_BINARY) +
                        " --listen 192.0.2.1:0 2>/dev/null";

  EXPECT_EQ(test_support::run_command(command).exit_status, 2);
}

} // namespace
