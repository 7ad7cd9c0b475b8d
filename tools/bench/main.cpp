// SPDX-License-Identifier: Apache-2.0
// cert_poll_bench: measures cert_poll against the in-process demo CA on
// synthetic databases, prints one table row per run and checks the
// performance targets. docs/BENCHMARK.md describes the figures.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <openssl/rand.h>
#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>

#include "child_process.hpp"
#include "runner.hpp"

namespace {

using bench::RunMeasurement;
using bench::SecondPassMeasurement;

constexpr int exit_target_failed = 1;
constexpr int exit_usage = 2;

// The targets of the standard set.
constexpr double max_wall_over_lower_bound = 1.5;
constexpr double min_sequential_over_parallel = 20;
constexpr double max_transaction_seconds = 0.050;
constexpr double max_peak_rss_mib = 64;
constexpr std::size_t memory_orders = 100000;
constexpr std::size_t speedup_orders = 10000;
constexpr int speedup_latency_ms = 20;

struct ScenarioPlan {
  std::size_t orders = 0;
  int latency_ms = 0;
  std::vector<int> jobs;
  bool second_pass = false; // after the run with the last job count
};

struct CommandLine {
  bool standard = false;
  bool quick = false;
  std::vector<std::size_t> orders;
  int latency_ms = 20;
  std::vector<int> jobs{1, 8, 32};
  bool second_pass = false;
  bool callgrind = false;
  std::string cert_poll = CERT_POLL_BINARY;
  std::string work_dir;
  bool keep_files = false;
  unsigned setup_threads = std::max(1U, std::thread::hardware_concurrency());
};

struct Results {
  std::vector<RunMeasurement> runs;
  std::vector<SecondPassMeasurement> second_passes;
  std::vector<bench::SetupTiming> setups;
  bool had_problems = false;
};

std::vector<ScenarioPlan> standard_plan() {
  return {
      {1000, speedup_latency_ms, {1, 8, 32}, false},
      {speedup_orders, speedup_latency_ms, {1, 8, 32}, true},
      {memory_orders, 0, {32}, false},
  };
}

std::string random_password() {
  std::array<unsigned char, 16> bytes{};
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) {
    throw std::runtime_error("RAND_bytes failed to make the demo CA password");
  }
  std::string hex;
  for (unsigned char byte : bytes) {
    hex += fmt::format("{:02x}", byte);
  }
  return hex;
}

std::string
format_optional(std::optional<double> value, double scale, int precision) {
  if (!value) {
    return "n/a";
  }
  return fmt::format("{:.{}f}", *value * scale, precision);
}

double mebibytes(long kibibytes) {
  return static_cast<double>(kibibytes) / 1024.0;
}

void print_run_header() {
  std::printf("| N | L ms | J | wall s | CPU s | peak RSS MiB | requests sent "
              "(CA) | cert_poll_ca_requests | DB transactions | longest "
              "transaction ms | lower bound s | wall / lower bound | "
              "result |\n");
  std::printf("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
              "---|\n");
  std::fflush(stdout);
}

void print_run_row(const RunMeasurement &run) {
  std::optional<double> bound = run.lower_bound_seconds();
  std::optional<double> ratio;
  if (bound && *bound > 0) {
    ratio = run.child.wall.count() / *bound;
  }
  std::printf(
      "| %zu | %d | %d | %.2f | %.2f | %.1f | %llu | %s | %s | %s | "
      "%s | %s | %s |\n",
      run.orders,
      run.latency_ms,
      run.jobs,
      run.child.wall.count(),
      run.child.cpu.count(),
      mebibytes(run.child.peak_rss_kib),
      static_cast<unsigned long long>(run.ca_requests),
      format_optional(run.cert_poll_ca_requests(), 1, 0).c_str(),
      format_optional(run.transactions(), 1, 0).c_str(),
      format_optional(run.longest_transaction_seconds(), 1000, 1).c_str(),
      format_optional(bound, 1, 2).c_str(),
      format_optional(ratio, 1, 2).c_str(),
      run.problems.empty() ? "ok" : "error");
  std::fflush(stdout);
}

void report_problems(const RunMeasurement &run, const char *context) {
  for (const std::string &problem : run.problems) {
    std::fprintf(stderr,
                 "cert_poll_bench: error: %s N=%zu L=%d J=%d: %s\n",
                 context,
                 run.orders,
                 run.latency_ms,
                 run.jobs,
                 problem.c_str());
  }
}

// Runs every plan and prints the run rows as they complete.
void run_plans(const bench::Settings &settings,
               const std::vector<ScenarioPlan> &plans,
               Results &results) {
  print_run_header();
  for (const ScenarioPlan &plan : plans) {
    std::fprintf(stderr,
                 "cert_poll_bench: preparing %zu orders (latency %d ms)\n",
                 plan.orders,
                 plan.latency_ms);
    int max_jobs = *std::max_element(plan.jobs.begin(), plan.jobs.end());
    bench::Scenario scenario(
        settings,
        fmt::format("N{}-L{}", plan.orders, plan.latency_ms),
        plan.orders,
        plan.latency_ms,
        max_jobs);
    results.setups.push_back(scenario.setup_timing());
    for (std::size_t i = 0; i < plan.jobs.size(); ++i) {
      bool last = i + 1 == plan.jobs.size();
      bool keep = last && plan.second_pass;
      RunMeasurement run = scenario.run(plan.jobs[i], {}, keep);
      print_run_row(run);
      report_problems(run, "run");
      results.had_problems |= !run.problems.empty();
      results.runs.push_back(run);
      if (keep) {
        SecondPassMeasurement pass = scenario.second_pass(run);
        report_problems(pass.run, "second pass");
        results.had_problems |= !pass.run.problems.empty();
        results.second_passes.push_back(pass);
      }
    }
  }
}

void print_second_passes(const Results &results) {
  if (results.second_passes.empty()) {
    return;
  }
  std::printf("\nSecond pass on the same database:\n\n");
  std::printf("| N | J | pending orders | requests sent (CA) | "
              "cert_poll_ca_requests | DB transactions | file identical | "
              "wall s |\n");
  std::printf("|---:|---:|---:|---:|---:|---:|---|---:|\n");
  for (const SecondPassMeasurement &pass : results.second_passes) {
    std::printf("| %zu | %d | %zu | %llu | %s | %s | %s | %.2f |\n",
                pass.run.orders,
                pass.run.jobs,
                pass.pending_orders,
                static_cast<unsigned long long>(pass.run.ca_requests),
                format_optional(pass.run.cert_poll_ca_requests(), 1, 0).c_str(),
                format_optional(pass.run.transactions(), 1, 0).c_str(),
                pass.file_identical ? "yes" : "no",
                pass.run.child.wall.count());
  }
}

void print_setups(const Results &results, unsigned threads) {
  std::printf("\nSetup (not part of the runs), on %u threads:\n\n", threads);
  std::printf("| N | CSRs made and registered s | database written s |\n");
  std::printf("|---:|---:|---:|\n");
  for (const bench::SetupTiming &setup : results.setups) {
    std::printf("| %zu | %.2f | %.2f |\n",
                setup.orders,
                setup.make_orders.count(),
                setup.write_database.count());
  }
}

// Runs cert_poll under callgrind for two sizes and prints the instructions
// per polled request, the difference of the totals over the difference of
// the order counts, so that start-up costs cancel out.
void run_callgrind(const bench::Settings &settings, Results &results) {
  constexpr std::array<std::size_t, 2> sizes{100, 300};
  constexpr int jobs = 4;
  std::array<std::optional<double>, 2> instructions;
  std::fprintf(stderr, "cert_poll_bench: running cert_poll under callgrind\n");
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    bench::Scenario scenario(
        settings, fmt::format("callgrind-N{}", sizes[i]), sizes[i], 0, jobs);
    std::filesystem::path out_file =
        settings.work_dir / fmt::format("callgrind-N{}.out", sizes[i]);
    RunMeasurement run =
        scenario.run(jobs,
                     {"valgrind",
                      "--tool=callgrind",
                      "--callgrind-out-file=" + out_file.string()});
    report_problems(run, "callgrind run");
    results.had_problems |= !run.problems.empty();
    instructions[i] = bench::callgrind_instructions(out_file);
    if (!instructions[i]) {
      std::fprintf(stderr,
                   "cert_poll_bench: error: no summary or totals line in "
                   "'%s'\n",
                   out_file.c_str());
      results.had_problems = true;
    }
  }

  std::printf("\nInstructions (callgrind, L=0 ms, J=%d):\n\n", jobs);
  std::printf("| N | instructions (Ir) |\n|---:|---:|\n");
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    std::printf("| %zu | %s |\n",
                sizes[i],
                format_optional(instructions[i], 1, 0).c_str());
  }
  std::optional<double> per_request;
  if (instructions[0] && instructions[1]) {
    per_request = (*instructions[1] - *instructions[0]) /
                  static_cast<double>(sizes[1] - sizes[0]);
  }
  std::printf("\ninstructions per polled request: %s\n",
              format_optional(per_request, 1, 0).c_str());
}

enum class Verdict { pass, fail, not_available };

struct TargetCheck {
  Verdict verdict = Verdict::not_available;
  std::string description;
  std::string measured;
};

const RunMeasurement *
find_run(const Results &results, std::size_t orders, int latency_ms, int jobs) {
  for (const RunMeasurement &run : results.runs) {
    if (run.orders == orders && run.latency_ms == latency_ms &&
        run.jobs == jobs) {
      return &run;
    }
  }
  return nullptr;
}

Verdict verdict_of(bool passed) {
  return passed ? Verdict::pass : Verdict::fail;
}

// Checks the targets whose runs are in `results`; a target without its
// runs is left out.
std::vector<TargetCheck> check_targets(const Results &results) {
  std::vector<TargetCheck> checks;
  const RunMeasurement *parallel =
      find_run(results, speedup_orders, speedup_latency_ms, 32);
  const RunMeasurement *sequential =
      find_run(results, speedup_orders, speedup_latency_ms, 1);
  if (parallel != nullptr) {
    TargetCheck check;
    check.description =
        fmt::format("N={}, L={} ms, J=32: wall <= {} x lower bound",
                    speedup_orders,
                    speedup_latency_ms,
                    max_wall_over_lower_bound);
    double bound = parallel->lower_bound_seconds().value_or(0);
    double wall = parallel->child.wall.count();
    check.verdict = verdict_of(wall <= max_wall_over_lower_bound * bound);
    check.measured =
        fmt::format("wall {:.2f} s, lower bound {:.2f} s, ratio {:.2f}",
                    wall,
                    bound,
                    bound > 0 ? wall / bound : 0);
    checks.push_back(check);
  }
  if (parallel != nullptr && sequential != nullptr) {
    TargetCheck check;
    check.description = fmt::format("N={}, L={} ms: J=1 wall / J=32 wall >= {}",
                                    speedup_orders,
                                    speedup_latency_ms,
                                    min_sequential_over_parallel);
    double speedup =
        sequential->child.wall.count() / parallel->child.wall.count();
    check.verdict = verdict_of(speedup >= min_sequential_over_parallel);
    check.measured = fmt::format("{:.1f}", speedup);
    checks.push_back(check);
  }
  if (!results.runs.empty()) {
    TargetCheck check;
    check.description =
        fmt::format("longest transaction < {:.0f} ms in every run",
                    max_transaction_seconds * 1000);
    std::optional<double> longest = 0.0;
    for (const RunMeasurement &run : results.runs) {
      std::optional<double> value = run.longest_transaction_seconds();
      longest = value && longest ? std::optional(std::max(*longest, *value))
                                 : std::nullopt;
    }
    if (longest) {
      check.verdict = verdict_of(*longest < max_transaction_seconds);
      check.measured = fmt::format("longest {:.1f} ms", *longest * 1000);
    } else {
      check.measured = "cert_poll_longest_transaction_seconds missing";
    }
    checks.push_back(check);
  }
  for (const RunMeasurement &run : results.runs) {
    if (run.orders != memory_orders) {
      continue;
    }
    TargetCheck check;
    check.description = fmt::format("N={}, J={}: peak RSS < {:.0f} MiB",
                                    memory_orders,
                                    run.jobs,
                                    max_peak_rss_mib);
    double rss = mebibytes(run.child.peak_rss_kib);
    check.verdict = verdict_of(rss < max_peak_rss_mib);
    check.measured = fmt::format("{:.1f} MiB", rss);
    checks.push_back(check);
  }
  for (const SecondPassMeasurement &pass : results.second_passes) {
    TargetCheck check;
    check.description =
        fmt::format("second pass N={}, J={}: one request per pending order, 0 "
                    "transactions, identical file",
                    pass.run.orders,
                    pass.run.jobs);
    std::optional<double> transactions = pass.run.transactions();
    bool requests_ok = pass.run.ca_requests == pass.pending_orders;
    check.measured =
        fmt::format("{} requests for {} pending, {} transactions, file {}",
                    pass.run.ca_requests,
                    pass.pending_orders,
                    format_optional(transactions, 1, 0),
                    pass.file_identical ? "identical" : "changed");
    if (!requests_ok || !pass.file_identical ||
        (transactions && *transactions != 0)) {
      check.verdict = Verdict::fail;
    } else {
      check.verdict = transactions ? Verdict::pass : Verdict::not_available;
    }
    checks.push_back(check);
  }
  return checks;
}

// Prints the checks and returns true when every one passed.
bool print_targets(const std::vector<TargetCheck> &checks) {
  if (checks.empty()) {
    return true;
  }
  std::printf("\nTargets:\n\n");
  bool all_passed = true;
  for (const TargetCheck &check : checks) {
    const char *label = check.verdict == Verdict::pass   ? "PASS"
                        : check.verdict == Verdict::fail ? "FAIL"
                                                         : "N/A ";
    all_passed &= check.verdict == Verdict::pass;
    std::printf("%s  %s: %s\n",
                label,
                check.description.c_str(),
                check.measured.c_str());
  }
  return all_passed;
}

std::vector<ScenarioPlan> plans_from(const CommandLine &line) {
  if (line.quick) {
    return {{20, 0, {2}, true}};
  }
  if (!line.orders.empty()) {
    std::vector<ScenarioPlan> plans;
    for (std::size_t orders : line.orders) {
      plans.push_back({orders, line.latency_ms, line.jobs, line.second_pass});
    }
    return plans;
  }
  if (line.standard || !line.callgrind) {
    return standard_plan();
  }
  return {};
}

void add_options(CLI::App &app, CommandLine &line) {
  auto *standard = app.add_flag(
      "--standard",
      line.standard,
      "run the standard set (the default without --quick or --orders): "
      "N=1000 and N=10000 with L=20 ms and J=1, 8, 32, a second pass on "
      "N=10000/J=32, and N=100000 with L=0 ms and J=32");
  auto *quick = app.add_flag(
      "--quick",
      line.quick,
      "smoke run: N=20, L=0 ms, J=2 and a second pass; checks the outcome "
      "counts, not the targets");
  auto *orders = app.add_option(
      "--orders",
      line.orders,
      "run these order counts instead of the standard set, comma-separated");
  orders->delimiter(',')->check(CLI::PositiveNumber);
  quick->excludes(standard)->excludes(orders);
  standard->excludes(orders);

  app.add_option("--latency-ms",
                 line.latency_ms,
                 "with --orders: the demo CA's added latency per response, "
                 "in milliseconds")
      ->check(CLI::Range(0, 60000))
      ->capture_default_str();
  app.add_option("--jobs",
                 line.jobs,
                 "with --orders: the job counts to run, comma-separated")
      ->delimiter(',')
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  app.add_flag("--second-pass",
               line.second_pass,
               "with --orders: run cert_poll again on the database of the "
               "last job count");
  app.add_flag("--callgrind",
               line.callgrind,
               "also count cert_poll's instructions with valgrind's callgrind "
               "(N=100 and N=300, L=0 ms, J=4); alone, runs only that");

  app.add_option("--cert-poll", line.cert_poll, "the cert_poll binary to run")
      ->check(CLI::ExistingFile)
      ->capture_default_str();
  app.add_option("--work-dir",
                 line.work_dir,
                 "folder for the databases, configurations and logs (default: "
                 "a new folder in the temporary directory)");
  app.add_flag("--keep-files",
               line.keep_files,
               "keep the work folder; it is also kept when a run fails");
  app.add_option("--setup-threads",
                 line.setup_threads,
                 "threads that generate the CSRs")
      ->check(CLI::Range(1U, 256U))
      ->capture_default_str();
}

std::filesystem::path make_work_dir(const std::string &requested) {
  if (!requested.empty()) {
    std::filesystem::create_directories(requested);
    return std::filesystem::absolute(requested);
  }
  std::string pattern =
      (std::filesystem::temp_directory_path() / "cert_poll_bench.XXXXXX")
          .string();
  if (mkdtemp(pattern.data()) == nullptr) {
    throw std::system_error(errno,
                            std::generic_category(),
                            "failed to create a work folder from '" + pattern +
                                "'");
  }
  return pattern;
}

int run(const CommandLine &line) {
  bench::Settings settings;
  settings.cert_poll = std::filesystem::absolute(line.cert_poll);
  settings.schema_file = BENCH_SCHEMA_FILE;
  settings.work_dir = make_work_dir(line.work_dir);
  settings.password = random_password();
  settings.setup_threads = line.setup_threads;
  settings.keep_files = line.keep_files;
  // cert_poll reads the password from this variable, named in the
  // generated configuration by api_password_variable.
  setenv(bench::password_variable, settings.password.c_str(), 1);
  std::fprintf(
      stderr, "cert_poll_bench: work folder %s\n", settings.work_dir.c_str());

  Results results;
  std::vector<ScenarioPlan> plans = plans_from(line);
  if (!plans.empty()) {
    run_plans(settings, plans, results);
    print_second_passes(results);
    print_setups(results, settings.setup_threads);
  }
  if (line.callgrind) {
    run_callgrind(settings, results);
  }
  constexpr std::size_t signing_samples = 200;
  std::printf("\ndemo CA leaf signing (EC P-256, ECDSA with SHA-256, one "
              "thread): %.0f us per certificate\n",
              bench::measure_leaf_signing(signing_samples) * 1e6);

  bool targets_passed = true;
  if (!line.quick) {
    targets_passed = print_targets(check_targets(results));
  }
  if (results.had_problems || line.keep_files) {
    std::fprintf(stderr,
                 "cert_poll_bench: kept the work folder %s\n",
                 settings.work_dir.c_str());
  } else {
    std::error_code ignored;
    std::filesystem::remove_all(settings.work_dir, ignored);
  }
  return results.had_problems || !targets_passed ? exit_target_failed : 0;
}

} // namespace

int main(int argc, char **argv) {
  if (argc > 1 && std::strcmp(argv[1], bench::k_measure_child_flag) == 0) {
    return bench::measure_child_main(argc, argv);
  }
  CLI::App app{"Measure cert_poll against the in-process demo CA on synthetic "
               "acme2certifier databases. Exit status 0: every run worked and "
               "every target checked passed; 1: a run failed or a target was "
               "missed or could not be measured; 2: usage error.",
               "cert_poll_bench"};
  CommandLine line;
  add_options(app, line);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError &error) {
    return app.exit(error) == 0 ? 0 : exit_usage;
  }
  // The demo CA logs every request at info level.
  spdlog::set_level(spdlog::level::warn);
  try {
    return run(line);
  } catch (const std::exception &error) {
    std::fprintf(stderr, "cert_poll_bench: error: %s\n", error.what());
    return exit_target_failed;
  }
}
