// SPDX-License-Identifier: Apache-2.0
#pragma once

// One benchmark scenario: a demo CA with a fixed latency, N registered
// requests and a database template, on which cert_poll runs with several
// job counts, each run on a fresh copy of the template.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "child_process.hpp"
#include "demo_ca.hpp"
#include "synthetic_db.hpp"

namespace bench {

// The environment variable that carries the demo CA's password to
// cert_poll, named by api_password_variable in the generated configuration.
inline constexpr const char *password_variable = "CERT_POLL_BENCH_PASSWORD";

struct Settings {
  std::filesystem::path cert_poll;
  std::filesystem::path schema_file;
  std::filesystem::path work_dir;
  std::string password;
  unsigned setup_threads = 1;
  bool keep_files = false;
};

// The gauges of a --metrics-file, by name with labels, e.g.
// `cert_poll_requests{outcome="issued"}`.
using Metrics = std::map<std::string, double>;

// Parses the Prometheus text format that cert_poll writes. Returns an
// empty map when the file does not exist.
Metrics read_metrics(const std::filesystem::path &path);
std::optional<double> metric(const Metrics &metrics, const std::string &name);
std::optional<double> outcome_metric(const Metrics &metrics,
                                     const std::string &outcome);

struct RunMeasurement {
  std::size_t orders = 0;
  int latency_ms = 0;
  int jobs = 1;
  ChildResult child;
  std::uint64_t ca_requests = 0; // counted by the demo CA
  Metrics metrics;
  std::filesystem::path run_dir;
  // Problems found in the run, such as an exit status other than 0 or a
  // wrong outcome count. Empty for a good run.
  std::vector<std::string> problems;

  std::optional<double> transactions() const;
  std::optional<double> longest_transaction_seconds() const;
  std::optional<double> cert_poll_ca_requests() const;
  // requests sent x latency / jobs; nullopt for latency 0.
  std::optional<double> lower_bound_seconds() const;
};

struct SecondPassMeasurement {
  RunMeasurement run;
  std::size_t pending_orders = 0; // orders in processing before the pass
  bool file_identical = false;
};

struct SetupTiming {
  std::size_t orders = 0;
  int latency_ms = 0;
  std::chrono::duration<double> make_orders{0}; // CSRs and add_request
  std::chrono::duration<double> write_database{0};
};

class Scenario {
public:
  // Starts the demo CA, registers `orders` requests and writes the
  // template database under settings.work_dir / name.
  Scenario(const Settings &settings,
           std::string name,
           std::size_t orders,
           int latency_ms,
           int max_jobs);
  ~Scenario();
  Scenario(const Scenario &) = delete;
  Scenario &operator=(const Scenario &) = delete;

  const SetupTiming &setup_timing() const { return m_timing; }

  // Runs cert_poll with `jobs` on a fresh copy of the template. `wrapper`
  // goes before the cert_poll path on the command line (valgrind). The run
  // folder stays when `keep_database` is set or the run has problems.
  RunMeasurement run(int jobs,
                     const std::vector<std::string> &wrapper = {},
                     bool keep_database = false);

  // Runs cert_poll again on the database of `first`, which run() kept, and
  // removes the run folder afterwards unless it has problems.
  SecondPassMeasurement second_pass(const RunMeasurement &first);

private:
  RunMeasurement run_in(const std::filesystem::path &run_dir,
                        int jobs,
                        const std::vector<std::string> &wrapper);
  void write_config(const std::filesystem::path &run_dir) const;
  void remove_run_dir(const RunMeasurement &measurement) const;

  const Settings &m_settings;
  std::filesystem::path m_dir;
  std::size_t m_orders;
  int m_latency_ms;
  OutcomeCounts m_expected;
  std::unique_ptr<demo_ca::DemoCa> m_ca;
  SetupTiming m_timing;
  int m_run_number = 0;
};

// Reads the instruction count (Ir) from the "summary:" or "totals:" line
// of a callgrind output file, or nullopt when neither is there.
std::optional<double> callgrind_instructions(const std::filesystem::path &path);

// Measures the demo CA's leaf signing (sign_leaf with its issuing CA key)
// over `count` CSRs on one thread. Returns seconds per certificate.
double measure_leaf_signing(std::size_t count);

} // namespace bench
