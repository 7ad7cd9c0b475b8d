// SPDX-License-Identifier: Apache-2.0
#include "runner.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <unistd.h>

#include <openssl/evp.h>
#include <spdlog/fmt/fmt.h>

#include "demo_pki.hpp"

namespace bench {

namespace {

using Clock = std::chrono::steady_clock;

void write_text_file(const std::filesystem::path &path,
                     const std::string &text) {
  std::ofstream stream(path, std::ios::binary | std::ios::trunc);
  stream << text;
  if (!stream.flush()) {
    throw std::runtime_error("failed to write '" + path.string() + "'");
  }
}

std::array<unsigned char, EVP_MAX_MD_SIZE>
hash_file(const std::filesystem::path &path) {
  std::ifstream stream(path, std::ios::binary);
  if (!stream) {
    throw std::runtime_error("failed to read '" + path.string() + "'");
  }
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> context(
      EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (context == nullptr ||
      EVP_DigestInit_ex(context.get(), EVP_sha256(), nullptr) != 1) {
    throw std::runtime_error("failed to set up SHA-256");
  }
  std::vector<char> buffer(1 << 20);
  while (stream) {
    stream.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    if (EVP_DigestUpdate(context.get(),
                         buffer.data(),
                         static_cast<std::size_t>(stream.gcount())) != 1) {
      throw std::runtime_error("SHA-256 of '" + path.string() + "' failed");
    }
  }
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  if (EVP_DigestFinal_ex(context.get(), digest.data(), nullptr) != 1) {
    throw std::runtime_error("SHA-256 of '" + path.string() + "' failed");
  }
  return digest;
}

// Compares a metric that must equal `expected`, adding a problem when it
// differs or is missing.
void expect_count(RunMeasurement &measurement,
                  const std::string &outcome,
                  std::size_t expected) {
  std::optional<double> value = outcome_metric(measurement.metrics, outcome);
  if (!value) {
    measurement.problems.push_back("metric cert_poll_requests{outcome=\"" +
                                   outcome + "\"} missing");
    return;
  }
  if (std::llround(*value) != static_cast<long long>(expected)) {
    measurement.problems.push_back(fmt::format(
        "{} requests: {} expected, {} reported", outcome, expected, *value));
  }
}

} // namespace

Metrics read_metrics(const std::filesystem::path &path) {
  Metrics metrics;
  std::ifstream stream(path);
  std::string line;
  while (std::getline(stream, line)) {
    if (line.empty() || line.front() == '#') {
      continue;
    }
    std::size_t space = line.rfind(' ');
    if (space == std::string::npos) {
      continue;
    }
    try {
      metrics[line.substr(0, space)] = std::stod(line.substr(space + 1));
    } catch (const std::exception &) {
      // A value that is not a number is left out, so it reads as missing.
    }
  }
  return metrics;
}

std::optional<double> metric(const Metrics &metrics, const std::string &name) {
  auto found = metrics.find(name);
  if (found == metrics.end()) {
    return std::nullopt;
  }
  return found->second;
}

std::optional<double> outcome_metric(const Metrics &metrics,
                                     const std::string &outcome) {
  return metric(metrics, "cert_poll_requests{outcome=\"" + outcome + "\"}");
}

std::optional<double> RunMeasurement::transactions() const {
  return metric(metrics, "cert_poll_database_transactions");
}

std::optional<double> RunMeasurement::longest_transaction_seconds() const {
  return metric(metrics, "cert_poll_longest_transaction_seconds");
}

std::optional<double> RunMeasurement::cert_poll_ca_requests() const {
  return metric(metrics, "cert_poll_ca_requests");
}

std::optional<double> RunMeasurement::lower_bound_seconds() const {
  if (latency_ms == 0) {
    return std::nullopt;
  }
  return static_cast<double>(ca_requests) * latency_ms / 1000.0 / jobs;
}

Scenario::Scenario(const Settings &settings,
                   std::string name,
                   std::size_t orders,
                   int latency_ms,
                   int max_jobs)
    : m_settings(settings), m_dir(settings.work_dir / name), m_orders(orders),
      m_latency_ms(latency_ms), m_expected(expected_outcomes(orders)) {
  std::filesystem::create_directories(m_dir);
  demo_ca::Options options;
  options.password = settings.password;
  options.latency = std::chrono::milliseconds(latency_ms);
  options.record_requests = false;
  // Every job keeps one keep-alive connection open, and each connection
  // occupies a server thread, so twice the jobs leaves room for reconnects.
  options.worker_threads =
      static_cast<std::size_t>(std::max(64, 2 * std::max(max_jobs, 1)));
  m_ca = std::make_unique<demo_ca::DemoCa>(options);
  m_ca->start();
  write_text_file(m_dir / "demo-ca-root.pem", m_ca->root_pem());

  m_timing.orders = orders;
  m_timing.latency_ms = latency_ms;
  auto began = Clock::now();
  std::vector<SyntheticOrder> synthetic =
      make_orders(*m_ca, orders, settings.setup_threads);
  auto orders_made = Clock::now();
  write_database(m_dir / "template.db", settings.schema_file, synthetic);
  m_timing.make_orders = orders_made - began;
  m_timing.write_database = Clock::now() - orders_made;
}

Scenario::~Scenario() {
  m_ca->stop();
  if (!m_settings.keep_files) {
    std::error_code ignored;
    std::filesystem::remove(m_dir / "template.db", ignored);
  }
}

void Scenario::write_config(const std::filesystem::path &run_dir) const {
  std::string config = fmt::format("# Written by cert_poll_bench for one run.\n"
                                   "[DBhandler]\n"
                                   "dbfile: {}\n"
                                   "\n"
                                   "[CAhandler]\n"
                                   "handler_file: certifier_ca_handler.py\n"
                                   "api_host: {}\n"
                                   "api_user: demo\n"
                                   "api_password_variable: {}\n"
                                   "ca_bundle: {}\n"
                                   "request_timeout: 120\n",
                                   (run_dir / "acme_srv.db").string(),
                                   m_ca->base_url(),
                                   password_variable,
                                   (m_dir / "demo-ca-root.pem").string());
  write_text_file(run_dir / "acme_srv.cfg", config);
}

RunMeasurement Scenario::run_in(const std::filesystem::path &run_dir,
                                int jobs,
                                const std::vector<std::string> &wrapper) {
  std::filesystem::path metrics_file = run_dir / "metrics.prom";
  std::filesystem::remove(metrics_file);
  std::vector<std::string> argv = wrapper;
  argv.push_back(m_settings.cert_poll.string());
  argv.insert(argv.end(),
              {"--config",
               (run_dir / "acme_srv.cfg").string(),
               "--metrics-file",
               metrics_file.string(),
               "--jobs",
               std::to_string(jobs)});

  RunMeasurement measurement;
  measurement.orders = m_orders;
  measurement.latency_ms = m_latency_ms;
  measurement.jobs = jobs;
  measurement.run_dir = run_dir;
  std::uint64_t before = m_ca->requests_received();
  measurement.child = run_child(argv, run_dir / "cert_poll.log");
  measurement.ca_requests = m_ca->requests_received() - before;
  measurement.metrics = read_metrics(metrics_file);
  if (measurement.child.exit_status != 0) {
    measurement.problems.push_back("cert_poll ended with " +
                                   describe_end(measurement.child) + "; see " +
                                   (run_dir / "cert_poll.log").string());
  }
  return measurement;
}

RunMeasurement Scenario::run(int jobs,
                             const std::vector<std::string> &wrapper,
                             bool keep_database) {
  std::filesystem::path run_dir =
      m_dir / fmt::format("run{}-J{}", ++m_run_number, jobs);
  std::filesystem::create_directories(run_dir);
  std::filesystem::copy_file(m_dir / "template.db", run_dir / "acme_srv.db");
  write_config(run_dir);
  // The copy and earlier runs leave dirty pages that the kernel would
  // write back during the run, delaying the run's COMMITs. Flushing them
  // first measures cert_poll's own transactions.
  ::sync();

  RunMeasurement measurement = run_in(run_dir, jobs, wrapper);
  expect_count(measurement, "issued", m_expected.approved);
  expect_count(measurement, "pending", m_expected.pending);
  expect_count(measurement, "rejected", m_expected.rejected);
  expect_count(measurement, "failed", 0);
  if (!keep_database) {
    remove_run_dir(measurement);
  }
  return measurement;
}

SecondPassMeasurement Scenario::second_pass(const RunMeasurement &first) {
  SecondPassMeasurement pass;
  std::filesystem::path database = first.run_dir / "acme_srv.db";
  pass.pending_orders = count_processing_orders(database);
  auto before = hash_file(database);
  pass.run = run_in(first.run_dir, first.jobs, {});
  pass.file_identical = hash_file(database) == before;

  RunMeasurement &run = pass.run;
  if (run.ca_requests != pass.pending_orders) {
    run.problems.push_back(
        fmt::format("second pass sent {} requests for {} pending orders",
                    run.ca_requests,
                    pass.pending_orders));
  }
  if (!pass.file_identical) {
    run.problems.push_back("second pass changed the database file");
  }
  if (run.transactions().value_or(0) != 0) {
    run.problems.push_back(fmt::format("second pass committed {} transactions",
                                       *run.transactions()));
  }
  expect_count(run, "pending", pass.pending_orders);
  expect_count(run, "issued", 0);
  remove_run_dir(run);
  return pass;
}

void Scenario::remove_run_dir(const RunMeasurement &measurement) const {
  if (m_settings.keep_files || !measurement.problems.empty()) {
    return;
  }
  std::error_code ignored;
  std::filesystem::remove_all(measurement.run_dir, ignored);
}

std::optional<double>
callgrind_instructions(const std::filesystem::path &path) {
  std::ifstream stream(path);
  std::string line;
  std::optional<double> totals;
  while (std::getline(stream, line)) {
    for (std::string_view prefix : {"summary:", "totals:"}) {
      if (!line.starts_with(prefix)) {
        continue;
      }
      std::istringstream fields(line.substr(prefix.size()));
      double instructions = 0;
      if (fields >> instructions) {
        if (prefix == "summary:") {
          return instructions;
        }
        totals = instructions;
      }
    }
  }
  return totals;
}

double measure_leaf_signing(std::size_t count) {
  using namespace demo_ca::detail;
  Pki pki;
  std::vector<CsrPtr> csrs;
  for (std::size_t i = 0; i < count; ++i) {
    std::string id = fmt::format("sign{}", i);
    csrs.push_back(parse_csr(id, make_csr_der(id + ".bench.example")));
  }
  auto began = Clock::now();
  for (const CsrPtr &csr : csrs) {
    sign_leaf(csr.get(),
              X509_REQ_get0_pubkey(csr.get()),
              pki.intermediate.get(),
              pki.intermediate_key.get());
  }
  std::chrono::duration<double> elapsed = Clock::now() - began;
  return elapsed.count() / static_cast<double>(std::max<std::size_t>(count, 1));
}

} // namespace bench
