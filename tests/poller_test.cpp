// SPDX-License-Identifier: Apache-2.0
// Whole poll passes over real HTTPS: a real SQLite file, the in-process demo
// CA and the certifier handler. Each test checks what the database contains
// afterwards.

#include "cert_poll/handlers/certifier.hpp"
#include "cert_poll/poller.hpp"
#include "cert_poll/store.hpp"
#include "cert_poll/x509.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "demo_ca.hpp"
#include "support/acme_db.hpp"
#include "support/test_support.hpp"

namespace {

using cert_poll::Outcome;
using cert_poll::PassOptions;
using cert_poll::PassSummary;
using demo_ca::Behaviour;
using test_support::AcmeDatabase;
using test_support::SchemaGeneration;

constexpr const char *k_user = "poller-test";
constexpr const char *k_password = "not-a-real-secret-7f3a";

demo_ca::Options ca_options() {
  demo_ca::Options options;
  options.user = k_user;
  options.password = k_password;
  options.slow_delay = std::chrono::milliseconds(3000);
  return options;
}

int count_pem_blocks(const std::string &pem) {
  int count = 0;
  for (std::size_t at = pem.find("BEGIN CERTIFICATE"); at != std::string::npos;
       at = pem.find("BEGIN CERTIFICATE", at + 1)) {
    ++count;
  }
  return count;
}

class PollPass : public ::testing::Test {
protected:
  void SetUp() override { start(SchemaGeneration::current); }

  void start(SchemaGeneration generation) {
    std::string file = generation == SchemaGeneration::current
                           ? "acme_srv.db"
                           : "acme_srv_2020.db";
    m_database = std::make_unique<AcmeDatabase>(m_dir / file, generation);
    if (!m_ca) {
      m_ca = std::make_unique<demo_ca::DemoCa>(ca_options());
      m_ca->start();
      test_support::write_file(m_dir / "root.pem", m_ca->root_pem());
    }
  }

  // Adds a processing order whose request the demo CA handles with
  // `behaviour`, and returns the poll identifier.
  std::string add_processing(const std::string &name, Behaviour behaviour) {
    auto key_and_csr = test_support::make_key_and_csr(name + ".example.com");
    std::string poll_identifier =
        m_ca->add_request("req-" + name, key_and_csr.csr_der, behaviour);
    m_database->add_order("Ord" + name,
                          "Crt" + name,
                          "processing",
                          key_and_csr.csr_base64,
                          poll_identifier,
                          "Unknown request status: pending");
    return poll_identifier;
  }

  cert_poll::CertifierSettings settings() const {
    cert_poll::CertifierSettings settings;
    settings.api_host = m_ca->base_url();
    settings.credentials = {k_user, k_password};
    settings.http.tls_verification = cert_poll::TlsVerification::bundle_file;
    settings.http.ca_bundle = m_dir / "root.pem";
    settings.http.timeout = std::chrono::milliseconds(m_timeout_ms);
    return settings;
  }

  PassSummary run(const PassOptions &options = {}) {
    return run_with(settings(), options);
  }

  PassSummary run_with(cert_poll::CertifierSettings handler_settings,
                       const PassOptions &options = {}) {
    cert_poll::StoreOptions store_options;
    store_options.read_only = options.dry_run;
    store_options.busy_timeout = m_busy_timeout;
    auto store = cert_poll::Store::open(m_database->path(), store_options);
    EXPECT_TRUE(store.has_value()) << store.error().message;
    auto handler =
        cert_poll::CertifierHandler::create(std::move(handler_settings));
    EXPECT_TRUE(handler.has_value()) << handler.error().message;
    auto summary = cert_poll::run_pass(*store, **handler, options);
    EXPECT_TRUE(summary.has_value()) << summary.error().message;
    return *summary;
  }

  test_support::CertificateRow row(const std::string &name) const {
    return m_database->row("Crt" + name);
  }

  test_support::TempDir m_dir;
  std::unique_ptr<demo_ca::DemoCa> m_ca;
  std::unique_ptr<AcmeDatabase> m_database;
  long m_timeout_ms = 10000;
  std::chrono::milliseconds m_busy_timeout{10000};
};

// SQLite's file change counter (bytes 24-27 of the header), which every
// committed write transaction in rollback-journal mode increments.
std::uint32_t change_counter(const std::filesystem::path &db) {
  std::string header = test_support::read_file(db).substr(24, 4);
  std::uint32_t counter = 0;
  for (char byte : header) {
    counter = (counter << 8) | static_cast<unsigned char>(byte);
  }
  return counter;
}

int request_resources_polled(const demo_ca::DemoCa &ca) {
  int count = 0;
  for (const auto &request : ca.received()) {
    if (request.path.starts_with("/v1/requests/")) {
      ++count;
    }
  }
  return count;
}

TEST_F(PollPass, ApprovedOrderBecomesValid) {
  add_processing("Good", Behaviour::approve);

  PassSummary summary = run();

  EXPECT_EQ(summary.issued, 1);
  auto stored = row("Good");
  EXPECT_EQ(stored.order_status, "valid");
  ASSERT_TRUE(stored.cert.has_value());
  EXPECT_EQ(count_pem_blocks(*stored.cert), 3);
  ASSERT_TRUE(stored.cert_raw.has_value());
  auto chain = cert_poll::x509::parse_pem_chain(*stored.cert);
  ASSERT_TRUE(chain.has_value());
  EXPECT_EQ(*stored.cert_raw,
            cert_poll::x509::encode_base64(chain->front().der()));
  EXPECT_FALSE(stored.error.has_value());
  EXPECT_FALSE(stored.poll_identifier.has_value());
  EXPECT_EQ(stored.serial, cert_poll::x509::serial_hex(chain->front()));
  EXPECT_EQ(stored.aki,
            cert_poll::x509::authority_key_identifier_hex(chain->front()));
  EXPECT_EQ(stored.renewal_info,
            *cert_poll::x509::renewal_info(chain->at(0), chain->at(1)));
  EXPECT_EQ(stored.issue_uts, cert_poll::x509::not_before_unix(chain->front()));
  EXPECT_EQ(stored.expire_uts, cert_poll::x509::not_after_unix(chain->front()));
}

TEST_F(PollPass, RejectedOrderBecomesInvalid) {
  std::string poll_identifier = add_processing("Bad", Behaviour::reject);

  PassSummary summary = run();

  EXPECT_EQ(summary.rejected, 1);
  auto stored = row("Bad");
  EXPECT_EQ(stored.order_status, "invalid");
  EXPECT_FALSE(stored.cert.has_value());
  ASSERT_TRUE(stored.error.has_value());
  EXPECT_NE(stored.error->find("rejected"), std::string::npos);
  EXPECT_EQ(stored.poll_identifier, poll_identifier);
}

TEST_F(PollPass, PendingOrderStaysProcessing) {
  std::string poll_identifier = add_processing("Wait", Behaviour::pending);

  PassSummary summary = run();

  EXPECT_EQ(summary.pending, 1);
  auto stored = row("Wait");
  EXPECT_EQ(stored.order_status, "processing");
  EXPECT_FALSE(stored.cert.has_value());
  EXPECT_FALSE(stored.error.has_value()) << "a pending request is no fault";
  EXPECT_EQ(stored.poll_identifier, poll_identifier);
}

// Faults of the CA: the order stays processing, the error names the cause
// and the poll identifier is kept for the next run.
struct FaultCase {
  const char *name;
  Behaviour behaviour;
  const char *error_part;
};

void PrintTo(const FaultCase &fault, std::ostream *out) {
  *out << fault.name;
}

class PollFault : public PollPass,
                  public ::testing::WithParamInterface<FaultCase> {};

TEST_P(PollFault, OrderStaysProcessingWithError) {
  const FaultCase &fault = GetParam();
  std::string poll_identifier = add_processing(fault.name, fault.behaviour);

  PassSummary summary = run();

  EXPECT_EQ(summary.failed, 1);
  auto stored = row(fault.name);
  EXPECT_EQ(stored.order_status, "processing");
  EXPECT_FALSE(stored.cert.has_value());
  ASSERT_TRUE(stored.error.has_value());
  EXPECT_NE(stored.error->find(fault.error_part), std::string::npos)
      << *stored.error;
  EXPECT_EQ(stored.poll_identifier, poll_identifier);
}

INSTANTIATE_TEST_SUITE_P(
    DemoCaFaults,
    PollFault,
    ::testing::Values(
        FaultCase{"Unknown", Behaviour::unknown_status, "on-hold-forever"},
        FaultCase{"Http500", Behaviour::server_error, "500"},
        FaultCase{"NotJson", Behaviour::invalid_json, "JSON"},
        FaultCase{"NoDer",
                  Behaviour::missing_certificate_base64,
                  "certificateBase64"},
        FaultCase{"OtherKey", Behaviour::wrong_key, "public key"}),
    [](const auto &test_case) { return std::string(test_case.param.name); });

TEST_F(PollPass, LeafOnlyChainIsStoredWithoutRenewalInfo) {
  add_processing("Leaf", Behaviour::leaf_only);

  PassSummary summary = run();

  EXPECT_EQ(summary.issued, 1);
  auto stored = row("Leaf");
  EXPECT_EQ(stored.order_status, "valid");
  ASSERT_TRUE(stored.cert.has_value());
  EXPECT_EQ(count_pem_blocks(*stored.cert), 1);
  EXPECT_TRUE(stored.renewal_info.value_or("").empty());
  EXPECT_FALSE(stored.serial.value_or("").empty());
}

TEST_F(PollPass, TimeoutLeavesOrderProcessing) {
  add_processing("Slow", Behaviour::slow);
  m_timeout_ms = 1000;

  PassSummary summary = run();

  EXPECT_EQ(summary.failed, 1);
  auto stored = row("Slow");
  EXPECT_EQ(stored.order_status, "processing");
  ASSERT_TRUE(stored.error.has_value());
  EXPECT_NE(stored.error->find("timed out"), std::string::npos)
      << *stored.error;
}

TEST_F(PollPass, WrongCaBundleFailsTls) {
  add_processing("Tls", Behaviour::approve);
  demo_ca::DemoCa stranger(ca_options());
  test_support::write_file(m_dir / "stranger.pem", stranger.root_pem());
  auto wrong = settings();
  wrong.http.ca_bundle = m_dir / "stranger.pem";

  PassSummary summary = run_with(wrong);

  EXPECT_EQ(summary.failed, 1);
  auto stored = row("Tls");
  EXPECT_EQ(stored.order_status, "processing");
  ASSERT_TRUE(stored.error.has_value());
  EXPECT_NE(stored.error->find("certificate"), std::string::npos)
      << *stored.error;
}

TEST_F(PollPass, OtherOriginGetsNoCredentials) {
  demo_ca::DemoCa elsewhere(ca_options());
  elsewhere.start();
  auto key_and_csr = test_support::make_key_and_csr("moved.example.org");
  std::string foreign = elsewhere.add_request(
      "req-moved", key_and_csr.csr_der, Behaviour::approve);
  m_database->add_order(
      "OrdMoved", "CrtMoved", "processing", key_and_csr.csr_base64, foreign);

  PassSummary summary = run();

  EXPECT_EQ(summary.failed, 1);
  auto stored = row("Moved");
  EXPECT_EQ(stored.order_status, "processing");
  ASSERT_TRUE(stored.error.has_value());
  EXPECT_NE(stored.error->find("api_host"), std::string::npos) << *stored.error;
  for (const auto &request : elsewhere.received()) {
    EXPECT_FALSE(request.had_authorization) << request.path;
  }
  EXPECT_TRUE(elsewhere.received().empty());
}

// Removes the dump lines that mention `name`.
std::string without_lines_containing(const std::string &dump,
                                     const std::string &name) {
  std::string kept;
  std::size_t start = 0;
  while (start < dump.size()) {
    std::size_t end = dump.find('\n', start);
    end = end == std::string::npos ? dump.size() : end + 1;
    std::string line = dump.substr(start, end - start);
    if (line.find(name) == std::string::npos) {
      kept += line;
    }
    start = end;
  }
  return kept;
}

TEST_F(PollPass, FaultChangesNoOtherRow) {
  auto other = test_support::make_key_and_csr("other.example.com");
  m_database->add_order("OrdDone", "CrtDone", "valid", other.csr_base64, "");
  std::string poll_identifier =
      add_processing("Broken", Behaviour::server_error);
  std::string before = m_database->dump();

  run();

  auto broken = row("Broken");
  EXPECT_EQ(broken.order_status, "processing");
  EXPECT_FALSE(broken.cert.has_value());
  EXPECT_EQ(broken.poll_identifier, poll_identifier);
  EXPECT_EQ(without_lines_containing(m_database->dump(), "CrtBroken"),
            without_lines_containing(before, "CrtBroken"));
}

TEST_F(PollPass, SkipsRowWithoutPollIdentifier) {
  auto key_and_csr = test_support::make_key_and_csr("nopoll.example.com");
  m_database->add_order(
      "OrdNoPoll", "CrtNoPoll", "processing", key_and_csr.csr_base64, "");

  PassSummary summary = run();

  EXPECT_EQ(summary.skipped, 1);
  EXPECT_EQ(row("NoPoll").order_status, "processing");
}

TEST_F(PollPass, DryRunWritesNothing) {
  add_processing("Good", Behaviour::approve);
  add_processing("Bad", Behaviour::reject);
  std::string before = m_database->dump();

  PassOptions options;
  options.dry_run = true;
  PassSummary summary = run(options);

  EXPECT_EQ(summary.issued, 1);
  EXPECT_EQ(summary.rejected, 1);
  EXPECT_EQ(m_database->dump(), before);
}

TEST_F(PollPass, OrderOptionPollsOnlyThatOrder) {
  add_processing("First", Behaviour::approve);
  add_processing("Second", Behaviour::approve);

  PassOptions options;
  options.order_name = "OrdSecond";
  PassSummary summary = run(options);

  EXPECT_EQ(summary.issued, 1);
  EXPECT_EQ(row("First").order_status, "processing");
  EXPECT_EQ(row("Second").order_status, "valid");
}

TEST_F(PollPass, SecondPassChangesNothing) {
  add_processing("Good", Behaviour::approve);
  add_processing("Bad", Behaviour::reject);
  add_processing("Wait", Behaviour::pending);
  run();
  std::string after_first = m_database->dump();

  PassSummary second = run();

  EXPECT_EQ(second.issued, 0);
  EXPECT_EQ(second.rejected, 0);
  EXPECT_EQ(second.pending, 1);
  EXPECT_EQ(m_database->dump(), after_first);
}

TEST_F(PollPass, OldSchemaGetsOnlyItsColumns) {
  start(SchemaGeneration::year_2020);
  std::string schema_before = m_database->schema_sql();
  add_processing("Old", Behaviour::approve);

  PassSummary summary = run();

  EXPECT_EQ(summary.issued, 1);
  auto stored = row("Old");
  EXPECT_EQ(stored.order_status, "valid");
  ASSERT_TRUE(stored.cert.has_value());
  EXPECT_EQ(count_pem_blocks(*stored.cert), 3);
  EXPECT_TRUE(stored.cert_raw.has_value());
  EXPECT_EQ(m_database->schema_sql(), schema_before);
}

TEST_F(PollPass, UnchangedPendingCausesNoWrite) {
  add_processing("Wait", Behaviour::pending);
  add_processing("Down", Behaviour::server_error);
  run();
  std::uint32_t after_first = change_counter(m_database->path());

  PassSummary second = run();

  EXPECT_EQ(second.pending, 1);
  EXPECT_EQ(second.failed, 1);
  EXPECT_EQ(change_counter(m_database->path()), after_first);
}

TEST_F(PollPass, OrderChangedElsewhereIsSkipped) {
  add_processing("Raced", Behaviour::approve);
  m_ca->set_behaviour("req-Raced", Behaviour::slow);
  m_timeout_ms = 10000;
  std::thread other_writer([this] {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    m_database->execute("UPDATE orders SET status_id = (SELECT id FROM status "
                        "WHERE name = 'invalid') WHERE name = 'OrdRaced'");
  });

  PassSummary summary = run();
  other_writer.join();

  EXPECT_EQ(summary.issued, 0);
  EXPECT_EQ(summary.failed, 0);
  EXPECT_EQ(summary.skipped, 1);
  auto stored = row("Raced");
  EXPECT_EQ(stored.order_status, "invalid");
  EXPECT_FALSE(stored.cert.has_value());
}

TEST_F(PollPass, LockedDatabaseStopsPass) {
  constexpr int k_orders = 10;
  for (int i = 0; i < k_orders; ++i) {
    add_processing("Locked" + std::to_string(i), Behaviour::approve);
  }
  m_busy_timeout = std::chrono::milliseconds(200);
  // A RESERVED lock lets cert_poll read the pending list but not write.
  m_database->execute("BEGIN IMMEDIATE");

  PassOptions options;
  options.jobs = 1;
  options.max_write_delay = std::chrono::milliseconds(0);
  PassSummary summary = run(options);
  m_database->execute("ROLLBACK");

  ASSERT_TRUE(summary.database_error.has_value());
  EXPECT_EQ(summary.database_error->kind, cert_poll::ErrorKind::busy);
  EXPECT_EQ(summary.failed, k_orders);
  // The first result's write fails. Until then the one job has polled at
  // most the request in flight and the one queued behind it.
  EXPECT_LE(request_resources_polled(*m_ca), 3);
  EXPECT_EQ(row("Locked0").order_status, "processing");
  EXPECT_EQ(row("Locked9").order_status, "processing");
}

using Clock = std::chrono::steady_clock;

constexpr const char *k_deadline_not_polled =
    "not polled: deadline reached (--max-runtime)";
constexpr const char *k_deadline_interrupted =
    "poll interrupted, nothing stored: deadline reached (--max-runtime)";
constexpr const char *k_stop_not_polled = "not polled: stopped by a signal";
constexpr const char *k_stop_interrupted =
    "poll interrupted, nothing stored: stopped by a signal";

// The report for order `name`, or an empty report when there is none.
cert_poll::RequestReport report_for(const PassSummary &summary,
                                    const std::string &name) {
  for (const auto &report : summary.requests) {
    if (report.order_name == "Ord" + name) {
      return report;
    }
  }
  ADD_FAILURE() << "no report for order 'Ord" << name << "'";
  return {};
}

// Waits up to 10 s until the demo CA has received a request resource GET.
bool wait_for_first_poll(const demo_ca::DemoCa &ca) {
  const auto give_up = Clock::now() + std::chrono::seconds(10);
  while (request_resources_polled(ca) == 0) {
    if (Clock::now() > give_up) {
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

TEST_F(PollPass, PastDeadlinePollsNothing) {
  add_processing("First", Behaviour::approve);
  add_processing("Second", Behaviour::reject);
  std::string before = m_database->dump();
  std::uint32_t counter_before = change_counter(m_database->path());

  PassOptions options;
  options.deadline = Clock::now() - std::chrono::seconds(1);
  PassSummary summary = run(options);

  EXPECT_EQ(summary.not_polled, 2);
  EXPECT_EQ(summary.issued, 0);
  EXPECT_EQ(summary.rejected, 0);
  EXPECT_EQ(summary.failed, 0);
  ASSERT_EQ(summary.requests.size(), 2u);
  for (const auto &report : summary.requests) {
    EXPECT_TRUE(report.not_polled) << report.order_name;
    EXPECT_EQ(report.message, k_deadline_not_polled) << report.order_name;
  }
  EXPECT_EQ(request_resources_polled(*m_ca), 0);
  EXPECT_EQ(m_database->dump(), before);
  EXPECT_EQ(change_counter(m_database->path()), counter_before);
}

TEST_F(PollPass, DeadlineCutsSlowRequestShort) {
  // The demo CA responds to the slow request after 3 s, within the 10 s
  // request timeout but after the 1 s deadline.
  add_processing("Slow", Behaviour::slow);
  add_processing("Next", Behaviour::approve);
  m_timeout_ms = 10000;
  std::string before = m_database->dump();

  PassOptions options;
  options.jobs = 1; // 'Next' waits until 'Slow' ends
  const auto start = Clock::now();
  options.deadline = start + std::chrono::seconds(1);
  PassSummary summary = run(options);
  const auto elapsed = Clock::now() - start;

  EXPECT_LT(elapsed, std::chrono::milliseconds(2500))
      << "the request timeout was not cut to the deadline";
  EXPECT_EQ(summary.not_polled, 2);
  EXPECT_EQ(summary.issued, 0);
  EXPECT_EQ(summary.failed, 0);
  auto slow = report_for(summary, "Slow");
  EXPECT_TRUE(slow.not_polled);
  EXPECT_EQ(slow.message, k_deadline_interrupted);
  auto next = report_for(summary, "Next");
  EXPECT_TRUE(next.not_polled);
  EXPECT_EQ(next.message, k_deadline_not_polled);
  EXPECT_EQ(request_resources_polled(*m_ca), 1) << "'Next' was polled";
  EXPECT_EQ(m_database->dump(), before);
}

TEST_F(PollPass, StopFlagAbortsSlowRequest) {
  add_processing("Slow", Behaviour::slow);
  add_processing("Next", Behaviour::approve);
  m_timeout_ms = 10000;
  std::string before = m_database->dump();
  std::atomic<bool> stop{false};
  // Sets the flag while the slow request is in flight, as a signal handler
  // would.
  std::thread stopper([this, &stop] {
    wait_for_first_poll(*m_ca);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    stop.store(true);
  });

  PassOptions options;
  options.jobs = 1; // 'Next' waits until 'Slow' ends
  options.stop_requested = &stop;
  const auto start = Clock::now();
  PassSummary summary = run(options);
  const auto elapsed = Clock::now() - start;
  stopper.join();

  EXPECT_LT(elapsed, std::chrono::milliseconds(2500))
      << "the transfer was not aborted";
  EXPECT_EQ(summary.not_polled, 2);
  EXPECT_EQ(summary.issued, 0);
  EXPECT_EQ(summary.failed, 0);
  auto slow = report_for(summary, "Slow");
  EXPECT_TRUE(slow.not_polled);
  EXPECT_EQ(slow.message, k_stop_interrupted);
  auto next = report_for(summary, "Next");
  EXPECT_TRUE(next.not_polled);
  EXPECT_EQ(next.message, k_stop_not_polled);
  EXPECT_EQ(request_resources_polled(*m_ca), 1) << "'Next' was polled";
  EXPECT_EQ(m_database->dump(), before);
}

// The handler on its own: a deadline or stop flag set before the poll
// sends nothing to the CA.
TEST_F(PollPass, HandlerPastDeadlineSendsNothing) {
  std::string poll_identifier = add_processing("Late", Behaviour::approve);
  auto handler = cert_poll::CertifierHandler::create(settings());
  ASSERT_TRUE(handler.has_value()) << handler.error().message;
  (*handler)->set_deadline(Clock::now());
  cert_poll::PendingRequest request;
  request.certificate_name = "CrtLate";
  request.order_name = "OrdLate";
  request.poll_identifier = poll_identifier;

  cert_poll::PollResult result = (*handler)->poll(request);

  EXPECT_EQ(result.status, cert_poll::PollStatus::failed);
  EXPECT_NE(result.message.find("not sent: deadline reached"),
            std::string::npos)
      << result.message;
  EXPECT_TRUE(m_ca->received().empty());
}

TEST_F(PollPass, HandlerWithStopSetSendsNothing) {
  std::string poll_identifier = add_processing("Stopped", Behaviour::approve);
  auto handler = cert_poll::CertifierHandler::create(settings());
  ASSERT_TRUE(handler.has_value()) << handler.error().message;
  std::atomic<bool> stop{true};
  (*handler)->set_stop_flag(&stop);
  cert_poll::PendingRequest request;
  request.certificate_name = "CrtStopped";
  request.order_name = "OrdStopped";
  request.poll_identifier = poll_identifier;

  cert_poll::PollResult result = (*handler)->poll(request);

  EXPECT_EQ(result.status, cert_poll::PollStatus::failed);
  EXPECT_NE(result.message.find("not sent: a stop was requested"),
            std::string::npos)
      << result.message;
  EXPECT_TRUE(m_ca->received().empty());
}

// Parallel polling, grouped writes and paging

// A demo CA that delays every response by 100 ms, in place of the
// fixture's, so that requests in flight at once show in the wall time.
class ParallelPass : public PollPass {
protected:
  void SetUp() override {
    demo_ca::Options options = ca_options();
    options.latency = std::chrono::milliseconds(100);
    m_ca = std::make_unique<demo_ca::DemoCa>(options);
    m_ca->start();
    test_support::write_file(m_dir / "root.pem", m_ca->root_pem());
    PollPass::SetUp();
  }
};

TEST_F(ParallelPass, JobsPollAtOnce) {
  constexpr int k_orders = 16;
  for (int i = 0; i < k_orders; ++i) {
    add_processing("Wait" + std::to_string(i), Behaviour::pending);
  }

  PassOptions options;
  options.jobs = 8;
  const auto start = Clock::now();
  PassSummary summary = run(options);
  const auto elapsed = Clock::now() - start;

  EXPECT_EQ(summary.pending, k_orders);
  EXPECT_EQ(summary.ca_requests, static_cast<std::uint64_t>(k_orders));
  // One after another the 16 requests take 1.6 s; 8 at once take about
  // 0.2 s plus the TLS handshakes.
  EXPECT_LT(elapsed, std::chrono::milliseconds(1000));
}

TEST_F(PollPass, IssuerLinksFetchedOncePerPass) {
  constexpr int k_orders = 10;
  for (int i = 0; i < k_orders; ++i) {
    add_processing("Chain" + std::to_string(i), Behaviour::approve);
  }

  PassOptions options;
  options.jobs = 4;
  PassSummary summary = run(options);

  EXPECT_EQ(summary.issued, k_orders);
  // Each order costs its request status and its certificate. The issuing
  // CA, its certificate, the root CA and its certificate are fetched once.
  EXPECT_EQ(summary.ca_requests, static_cast<std::uint64_t>(k_orders * 2 + 4));
  EXPECT_EQ(m_ca->requests_received(), summary.ca_requests);
  for (int i = 0; i < k_orders; ++i) {
    auto stored = row("Chain" + std::to_string(i));
    EXPECT_EQ(stored.order_status, "valid");
    ASSERT_TRUE(stored.cert.has_value());
    EXPECT_EQ(count_pem_blocks(*stored.cert), 3);
  }
}

TEST_F(PollPass, SecondPassSendsOneRequestEach) {
  constexpr int k_pending = 6;
  for (int i = 0; i < k_pending; ++i) {
    add_processing("Again" + std::to_string(i), Behaviour::pending);
  }
  add_processing("Done", Behaviour::approve);
  add_processing("No", Behaviour::reject);
  PassSummary first = run();
  EXPECT_EQ(first.issued, 1);
  EXPECT_EQ(first.rejected, 1);
  // The stored error of the pending rows changes once.
  EXPECT_GE(first.transactions, 1U);
  const std::uint32_t after_first = change_counter(m_database->path());
  const std::string dump_after_first = m_database->dump();

  PassSummary second = run();

  EXPECT_EQ(second.pending, k_pending);
  EXPECT_EQ(second.ca_requests, static_cast<std::uint64_t>(k_pending));
  EXPECT_EQ(second.transactions, 0U);
  EXPECT_EQ(change_counter(m_database->path()), after_first);
  EXPECT_EQ(m_database->dump(), dump_after_first);
}

TEST_F(PollPass, ResultsShareTransactions) {
  constexpr int k_orders = 40;
  for (int i = 0; i < k_orders; ++i) {
    add_processing("Group" + std::to_string(i),
                   i % 4 == 3 ? Behaviour::reject : Behaviour::approve);
  }

  PassOptions options;
  options.jobs = 8;
  options.max_write_delay = std::chrono::milliseconds(200);
  PassSummary summary = run(options);

  EXPECT_EQ(summary.issued, 30);
  EXPECT_EQ(summary.rejected, 10);
  EXPECT_GE(summary.transactions, 1U);
  EXPECT_LT(summary.transactions, static_cast<std::uint64_t>(k_orders) / 2);
  EXPECT_GT(summary.longest_transaction.count(), 0);
  for (int i = 0; i < k_orders; ++i) {
    auto stored = row("Group" + std::to_string(i));
    if (i % 4 == 3) {
      EXPECT_EQ(stored.order_status, "invalid") << i;
      EXPECT_FALSE(stored.cert.has_value()) << i;
    } else {
      EXPECT_EQ(stored.order_status, "valid") << i;
      EXPECT_TRUE(stored.cert.has_value()) << i;
    }
  }
}

TEST_F(PollPass, PagesCoverWholeList) {
  // The first two pages of three rows hold only rows without a poll
  // identifier, which the pass must read past.
  constexpr int k_without_identifier = 6;
  for (int i = 0; i < k_without_identifier; ++i) {
    const std::string name = "NoPoll" + std::to_string(i);
    auto key_and_csr = test_support::make_key_and_csr(name + ".example.com");
    m_database->add_order(
        "Ord" + name, "Crt" + name, "processing", key_and_csr.csr_base64, "");
  }
  constexpr int k_pending = 10;
  for (int i = 0; i < k_pending; ++i) {
    add_processing("Page" + std::to_string(i), Behaviour::pending);
  }

  PassOptions options;
  options.page_size = 3;
  PassSummary summary = run(options);

  EXPECT_EQ(summary.pending, k_pending);
  EXPECT_EQ(summary.skipped, k_without_identifier);
  EXPECT_EQ(summary.ca_requests, static_cast<std::uint64_t>(k_pending));
  ASSERT_EQ(summary.requests.size(), static_cast<std::size_t>(k_pending));
}

TEST_F(PollPass, PagesEndingOnIdZero) {
  constexpr int k_pending = 5;
  for (int i = 0; i < k_pending; ++i) {
    add_processing("Zero" + std::to_string(i), Behaviour::pending);
  }
  // Ids -1 to 3, so the first page of two ends on certificate id 0.
  m_database->execute("UPDATE certificate SET id = id - 2");

  PassOptions options;
  options.page_size = 2;
  options.deadline = Clock::now() + std::chrono::seconds(20);
  PassSummary summary = run(options);

  EXPECT_EQ(summary.pending, k_pending);
  EXPECT_EQ(summary.not_polled, 0);
  EXPECT_EQ(summary.ca_requests, static_cast<std::uint64_t>(k_pending));
}

TEST_F(PollPass, ReportsInCertificateOrder) {
  for (int i = 0; i < 12; ++i) {
    add_processing("Sorted" + std::to_string(i),
                   i % 3 == 0 ? Behaviour::approve : Behaviour::pending);
  }

  PassOptions options;
  options.jobs = 6;
  PassSummary summary = run(options);

  ASSERT_EQ(summary.requests.size(), 12U);
  for (std::size_t i = 1; i < summary.requests.size(); ++i) {
    EXPECT_LT(summary.requests[i - 1].certificate_id,
              summary.requests[i].certificate_id);
  }
}

TEST_F(PollPass, NoReportsKeepsCounts) {
  add_processing("Kept", Behaviour::approve);
  add_processing("Waits", Behaviour::pending);

  PassOptions options;
  options.keep_reports = false;
  PassSummary summary = run(options);

  EXPECT_TRUE(summary.requests.empty());
  EXPECT_EQ(summary.issued, 1);
  EXPECT_EQ(summary.pending, 1);
}

TEST_F(PollPass, DeadlineKeepsFinishedResults) {
  add_processing("Slow", Behaviour::slow);
  add_processing("Quick", Behaviour::approve);
  m_timeout_ms = 10000;

  PassOptions options;
  options.jobs = 2;
  options.deadline = Clock::now() + std::chrono::seconds(1);
  PassSummary summary = run(options);

  EXPECT_EQ(summary.issued, 1);
  EXPECT_EQ(summary.not_polled, 1);
  EXPECT_EQ(report_for(summary, "Slow").message, k_deadline_interrupted);
  EXPECT_EQ(row("Quick").order_status, "valid");
  EXPECT_EQ(row("Slow").order_status, "processing");
}

} // namespace
