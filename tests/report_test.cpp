// SPDX-License-Identifier: Apache-2.0
// The --list table, the --json document and the --metrics-file file.

#include "cert_poll/report.hpp"

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/test_support.hpp"

namespace {

namespace fs = std::filesystem;
using cert_poll::Outcome;
using cert_poll::PassMetrics;
using cert_poll::PassSummary;
using cert_poll::PendingRequest;
using std::chrono::sys_days;
using namespace std::chrono_literals;

// 2026-12-04 12:00:00 UTC.
std::chrono::system_clock::time_point noon() {
  return sys_days{std::chrono::year{2026} / 12 / 4} + 12h;
}

std::vector<std::string> lines_of(const std::string &text) {
  std::vector<std::string> lines;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    lines.push_back(text.substr(start, end - start));
    start = end == std::string::npos ? text.size() : end + 1;
  }
  return lines;
}

bool contains_line(const std::string &text, const std::string &line) {
  for (const auto &candidate : lines_of(text)) {
    if (candidate == line) {
      return true;
    }
  }
  return false;
}

PendingRequest request(std::string order, std::string poll_identifier) {
  PendingRequest pending;
  pending.order_name = std::move(order);
  pending.certificate_name = "Crt" + pending.order_name;
  pending.poll_identifier = std::move(poll_identifier);
  pending.identifiers = R"([{"type": "dns", "value": "www.example.com"}])";
  pending.created_at = "2026-12-01 08:00:00";
  return pending;
}

PassSummary example_summary() {
  PassSummary summary;
  summary.issued = 2;
  summary.pending = 1;
  summary.rejected = 1;
  summary.skipped = 1;
  summary.ca_requests = 7;
  summary.transactions = 2;
  summary.longest_transaction = std::chrono::microseconds(12500);
  summary.requests.push_back(
      {"Ord1", "Crt1", Outcome::issued, "certificate issued"});
  summary.requests.push_back(
      {"Ord2", "Crt2", Outcome::pending, "still pending at the CA"});
  return summary;
}

TEST(CutText, ShortTextUnchanged) {
  EXPECT_EQ(cert_poll::cut_text("connection refused", 60),
            "connection refused");
}

TEST(CutText, LongTextEndsWithEllipsis) {
  std::string cut = cert_poll::cut_text(std::string(100, 'x'), 10);

  EXPECT_EQ(cut, "xxxxxxx...");
}

TEST(CutText, ControlCharactersBecomeSpaces) {
  EXPECT_EQ(cert_poll::cut_text("line one\nline\ttwo", 60),
            "line one line two");
}

TEST(CutText, KeepsUtf8CodePointsWhole) {
  // Each "ü" is two bytes, and the width counts code points.
  std::string cut = cert_poll::cut_text("üüüüüüüüüü", 6);

  EXPECT_EQ(cut, "üüü...");
}

TEST(FormatIdentifiers, JoinsDnsNames) {
  EXPECT_EQ(cert_poll::format_identifiers(
                R"([{"type": "dns", "value": "www.example.com"},)"
                R"( {"type": "DNS", "value": "example.com"}])"),
            "www.example.com, example.com");
}

TEST(FormatIdentifiers, PrefixesOtherTypes) {
  EXPECT_EQ(cert_poll::format_identifiers(
                R"([{"type": "ip", "value": "192.0.2.7"}])"),
            "ip:192.0.2.7");
}

TEST(FormatIdentifiers, InvalidJsonShownAsStored) {
  EXPECT_EQ(cert_poll::format_identifiers("www.example.com"),
            "www.example.com");
  EXPECT_EQ(cert_poll::format_identifiers(R"([{"type": "dns"}])"),
            R"([{"type": "dns"}])");
}

TEST(FormatIdentifiers, EmptyTextGivesEmpty) {
  EXPECT_EQ(cert_poll::format_identifiers(""), "");
}

TEST(FormatAge, DaysAndHours) {
  EXPECT_EQ(cert_poll::format_age("2026-12-01 08:00:00", noon()), "3d 4h");
}

TEST(FormatAge, HoursAndMinutes) {
  EXPECT_EQ(cert_poll::format_age("2026-12-04 06:48:59", noon()), "5h 11m");
}

TEST(FormatAge, MinutesOnly) {
  EXPECT_EQ(cert_poll::format_age("2026-12-04 11:35:00", noon()), "25m");
}

TEST(FormatAge, IsoSeparatorAndFraction) {
  EXPECT_EQ(cert_poll::format_age("2026-12-04T11:35:00.123456", noon()), "25m");
}

TEST(FormatAge, FutureTimeGivesZero) {
  EXPECT_EQ(cert_poll::format_age("2026-12-05 00:00:00", noon()), "0m");
}

TEST(FormatAge, MissingOrInvalidGivesEmpty) {
  EXPECT_EQ(cert_poll::format_age("", noon()), "");
  EXPECT_EQ(cert_poll::format_age("yesterday", noon()), "");
  EXPECT_EQ(cert_poll::format_age("2026-02-30 08:00:00", noon()), "");
  EXPECT_EQ(cert_poll::format_age("2026-12-01 25:00:00", noon()), "");
}

TEST(RequestTable, HeaderAndOneLinePerRequest) {
  auto first = request("Ord1", "https://ca.example/v1/requests/1");
  first.error = "Unknown request status: pending";

  std::string table =
      cert_poll::format_request_table({first, request("Ord2", "")}, noon());

  auto lines = lines_of(table);
  ASSERT_EQ(lines.size(), 3u) << table;
  EXPECT_EQ(lines[0].rfind("ORDER", 0), 0u) << table;
  EXPECT_NE(lines[0].find("CERTIFICATE"), std::string::npos);
  EXPECT_NE(lines[0].find("IDENTIFIERS"), std::string::npos);
  EXPECT_NE(lines[0].find("AGE"), std::string::npos);
  EXPECT_NE(lines[0].find("POLL IDENTIFIER"), std::string::npos);
  EXPECT_NE(lines[0].find("LAST ERROR"), std::string::npos);
  EXPECT_EQ(lines[1],
            "Ord1   CrtOrd1      www.example.com  3d 4h  "
            "https://ca.example/v1/requests/1  Unknown request status: pending")
      << table;
}

TEST(RequestTable, MissingPollIdentifierShownAsDash) {
  std::string table =
      cert_poll::format_request_table({request("Ord2", "")}, noon());

  auto lines = lines_of(table);
  ASSERT_EQ(lines.size(), 2u) << table;
  EXPECT_EQ(lines[1], "Ord2   CrtOrd2      www.example.com  3d 4h  -") << table;
}

TEST(RequestTable, ColumnsAligned) {
  auto first = request("Ord1", "https://ca.example/1");
  auto second = request("LongerOrderName", "https://ca.example/2");
  second.created_at = "";
  second.error = "timed out";

  auto lines =
      lines_of(cert_poll::format_request_table({first, second}, noon()));

  ASSERT_EQ(lines.size(), 3u);
  std::size_t header_column = lines[0].find("LAST ERROR");
  EXPECT_EQ(lines[2].find("timed out"), header_column);
  EXPECT_EQ(lines[1].find("https://"), lines[0].find("POLL IDENTIFIER"));
  EXPECT_EQ(lines[2].find("https://"), lines[0].find("POLL IDENTIFIER"));
}

TEST(RequestTable, LongErrorCut) {
  auto pending = request("Ord1", "https://ca.example/1");
  pending.error = std::string(200, 'e');

  std::string table = cert_poll::format_request_table({pending}, noon());

  std::string expected =
      std::string(cert_poll::k_error_column_width - 3, 'e') + "...";
  EXPECT_TRUE(lines_of(table)[1].ends_with("  " + expected)) << table;
}

TEST(RequestTable, EmptyListPrintsHeaderOnly) {
  auto lines = lines_of(cert_poll::format_request_table({}, noon()));

  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0],
            "ORDER  CERTIFICATE  IDENTIFIERS  AGE  POLL IDENTIFIER  LAST "
            "ERROR");
}

TEST(PassJson, DocumentShape) {
  auto document = nlohmann::json::parse(
      cert_poll::format_pass_json(example_summary(), true, 1234ms));

  ASSERT_TRUE(document.at("requests").is_array());
  ASSERT_EQ(document["requests"].size(), 2u);
  const auto &first = document["requests"][0];
  EXPECT_EQ(first.at("order"), "Ord1");
  EXPECT_EQ(first.at("certificate"), "Crt1");
  EXPECT_EQ(first.at("outcome"), "issued");
  EXPECT_EQ(first.at("skipped"), false);
  EXPECT_EQ(first.at("not_polled"), false);
  EXPECT_EQ(first.at("message"), "certificate issued");
  EXPECT_EQ(document["requests"][1].at("outcome"), "pending");
  EXPECT_EQ(document.at("dry_run"), true);
  EXPECT_DOUBLE_EQ(document.at("duration_seconds").get<double>(), 1.234);
  EXPECT_EQ(document.at("ca_requests"), 7);
  EXPECT_EQ(document.at("database_transactions"), 2);
  EXPECT_DOUBLE_EQ(document.at("longest_transaction_seconds").get<double>(),
                   0.0125);
  EXPECT_TRUE(document.at("database_error").is_null());
}

TEST(PassJson, TotalsHaveEveryCounter) {
  PassSummary summary = example_summary();
  summary.failed = 3;
  summary.not_polled = 4;

  auto totals = nlohmann::json::parse(
      cert_poll::format_pass_json(summary, false, 0s))["totals"];

  EXPECT_EQ(totals.size(), 6u) << totals.dump();
  EXPECT_EQ(totals.at("issued"), 2);
  EXPECT_EQ(totals.at("pending"), 1);
  EXPECT_EQ(totals.at("rejected"), 1);
  EXPECT_EQ(totals.at("failed"), 3);
  EXPECT_EQ(totals.at("skipped"), 1);
  EXPECT_EQ(totals.at("not_polled"), 4);
}

TEST(PassJson, DatabaseErrorMessage) {
  PassSummary summary;
  summary.database_error =
      cert_poll::Error{cert_poll::ErrorKind::busy, "database is locked"};

  auto document =
      nlohmann::json::parse(cert_poll::format_pass_json(summary, false, 0s));

  EXPECT_EQ(document.at("database_error"), "database is locked");
}

TEST(PassJson, InvalidUtf8Replaced) {
  PassSummary summary;
  summary.requests.push_back(
      {"Ord1", "Crt1", Outcome::failed, "bad byte \xff here"});

  std::string text = cert_poll::format_pass_json(summary, false, 0s);

  auto document = nlohmann::json::parse(text);
  EXPECT_EQ(document["requests"][0]["message"], "bad byte \xef\xbf\xbd here");
}

TEST(Metrics, FormatHasEveryMetric) {
  PassSummary summary = example_summary();
  PassMetrics metrics{summary, 2500ms, noon(), 3};

  std::string text = cert_poll::format_metrics(metrics, 1700000000);

  EXPECT_TRUE(contains_line(text, R"(cert_poll_requests{outcome="issued"} 2)"))
      << text;
  EXPECT_TRUE(
      contains_line(text, R"(cert_poll_requests{outcome="pending"} 1)"));
  EXPECT_TRUE(
      contains_line(text, R"(cert_poll_requests{outcome="rejected"} 1)"));
  EXPECT_TRUE(contains_line(text, R"(cert_poll_requests{outcome="failed"} 0)"));
  EXPECT_TRUE(
      contains_line(text, R"(cert_poll_requests{outcome="skipped"} 1)"));
  EXPECT_TRUE(
      contains_line(text, R"(cert_poll_requests{outcome="not_polled"} 0)"));
  EXPECT_TRUE(contains_line(text, "cert_poll_pending_requests 3"));
  EXPECT_TRUE(contains_line(text, "cert_poll_pass_duration_seconds 2.500"));
  EXPECT_TRUE(contains_line(text, "cert_poll_ca_requests 7"));
  EXPECT_TRUE(contains_line(text, "cert_poll_database_transactions 2"));
  EXPECT_TRUE(
      contains_line(text, "cert_poll_longest_transaction_seconds 0.012500"));
  EXPECT_TRUE(contains_line(
      text, "cert_poll_last_success_timestamp_seconds 1700000000"));
  EXPECT_TRUE(
      contains_line(text, "cert_poll_last_run_timestamp_seconds 1796385600"));
}

TEST(Metrics, HelpAndTypeForEachMetric) {
  PassSummary summary;
  std::string text =
      cert_poll::format_metrics(PassMetrics{summary, 1s, noon(), 0}, 1);

  for (const char *name : {"cert_poll_requests",
                           "cert_poll_pending_requests",
                           "cert_poll_ca_requests",
                           "cert_poll_database_transactions",
                           "cert_poll_longest_transaction_seconds",
                           "cert_poll_pass_duration_seconds",
                           "cert_poll_last_success_timestamp_seconds",
                           "cert_poll_last_run_timestamp_seconds"}) {
    EXPECT_NE(text.find(std::string("# HELP ") + name + " "), std::string::npos)
        << name;
    EXPECT_TRUE(contains_line(text, std::string("# TYPE ") + name + " gauge"))
        << name;
  }
}

TEST(Metrics, UnknownValuesLeftOut) {
  PassSummary summary;
  std::string text = cert_poll::format_metrics(
      PassMetrics{summary, 1s, noon(), std::nullopt}, std::nullopt);

  EXPECT_EQ(text.find("cert_poll_pending_requests"), std::string::npos);
  EXPECT_EQ(text.find("cert_poll_last_success_timestamp_seconds"),
            std::string::npos);
  EXPECT_NE(text.find("cert_poll_last_run_timestamp_seconds"),
            std::string::npos);
}

TEST(Metrics, ParseLastSuccess) {
  EXPECT_EQ(cert_poll::parse_last_success(
                "# HELP cert_poll_last_success_timestamp_seconds x\n"
                "cert_poll_last_success_timestamp_seconds 1700000000\n"),
            1700000000);
  EXPECT_EQ(cert_poll::parse_last_success(
                "cert_poll_last_success_timestamp_seconds 1.7e9\n"),
            1700000000);
  EXPECT_EQ(cert_poll::parse_last_success("cert_poll_last_run 5\n"),
            std::nullopt);
  EXPECT_EQ(cert_poll::parse_last_success(
                "cert_poll_last_success_timestamp_seconds_other 5\n"),
            std::nullopt);
  EXPECT_EQ(cert_poll::parse_last_success(
                "cert_poll_last_success_timestamp_seconds soon\n"),
            std::nullopt);
}

TEST(Metrics, PassSucceededOnlyWithoutFailures) {
  PassSummary summary = example_summary();
  EXPECT_TRUE(cert_poll::pass_succeeded(summary));

  summary.failed = 1;
  EXPECT_FALSE(cert_poll::pass_succeeded(summary));

  summary.failed = 0;
  summary.not_polled = 1;
  EXPECT_FALSE(cert_poll::pass_succeeded(summary));

  summary.not_polled = 0;
  summary.database_error =
      cert_poll::Error{cert_poll::ErrorKind::busy, "locked"};
  EXPECT_FALSE(cert_poll::pass_succeeded(summary));
}

std::vector<std::string> folder_entries(const fs::path &folder) {
  std::vector<std::string> names;
  for (const auto &entry : fs::directory_iterator(folder)) {
    names.push_back(entry.path().filename().string());
  }
  return names;
}

TEST(MetricsFile, ReplacesOldFile) {
  test_support::TempDir dir;
  fs::path path = dir / "cert_poll.prom";
  test_support::write_file(path, "old content\n");
  PassSummary summary = example_summary();

  auto written =
      cert_poll::write_metrics_file(path, PassMetrics{summary, 1s, noon(), 2});

  ASSERT_TRUE(written.has_value()) << written.error().message;
  std::string text = test_support::read_file(path);
  EXPECT_EQ(text.find("old content"), std::string::npos);
  EXPECT_TRUE(contains_line(text, R"(cert_poll_requests{outcome="issued"} 2)"));
  EXPECT_TRUE(contains_line(
      text, "cert_poll_last_success_timestamp_seconds 1796385600"));
  EXPECT_EQ(folder_entries(dir.path()),
            std::vector<std::string>{"cert_poll.prom"});
}

TEST(MetricsFile, FailedPassKeepsLastSuccess) {
  test_support::TempDir dir;
  fs::path path = dir / "cert_poll.prom";
  PassSummary good = example_summary();
  ASSERT_TRUE(
      cert_poll::write_metrics_file(path, PassMetrics{good, 1s, noon() - 1h, 2})
          .has_value());
  PassSummary failed = example_summary();
  failed.failed = 1;

  auto written =
      cert_poll::write_metrics_file(path, PassMetrics{failed, 1s, noon(), 2});

  ASSERT_TRUE(written.has_value()) << written.error().message;
  std::string text = test_support::read_file(path);
  EXPECT_TRUE(contains_line(
      text, "cert_poll_last_success_timestamp_seconds 1796382000"))
      << text;
  EXPECT_TRUE(
      contains_line(text, "cert_poll_last_run_timestamp_seconds 1796385600"));
  EXPECT_TRUE(contains_line(text, R"(cert_poll_requests{outcome="failed"} 1)"));
}

TEST(MetricsFile, FirstPassFailedHasNoLastSuccess) {
  test_support::TempDir dir;
  fs::path path = dir / "cert_poll.prom";
  PassSummary failed;
  failed.failed = 1;

  ASSERT_TRUE(
      cert_poll::write_metrics_file(path, PassMetrics{failed, 1s, noon(), 1})
          .has_value());

  EXPECT_EQ(test_support::read_file(path).find(
                "cert_poll_last_success_timestamp_seconds"),
            std::string::npos);
}

TEST(MetricsFile, MissingFolderNamesPath) {
  test_support::TempDir dir;
  fs::path path = dir / "no-such-folder" / "cert_poll.prom";
  PassSummary summary;

  auto written =
      cert_poll::write_metrics_file(path, PassMetrics{summary, 1s, noon(), 0});

  ASSERT_FALSE(written.has_value());
  EXPECT_EQ(written.error().kind, cert_poll::ErrorKind::usage);
  EXPECT_NE(written.error().message.find("'" + path.string() + "'"),
            std::string::npos)
      << written.error().message;
  EXPECT_NE(written.error().message.find("--metrics-file"), std::string::npos);
}

TEST(MetricsFile, FolderAtPathFailsWithoutTemporaryFile) {
  test_support::TempDir dir;
  fs::path path = dir / "cert_poll.prom";
  fs::create_directory(path);
  PassSummary summary;

  auto written =
      cert_poll::write_metrics_file(path, PassMetrics{summary, 1s, noon(), 0});

  ASSERT_FALSE(written.has_value());
  EXPECT_NE(written.error().message.find("'" + path.string() + "'"),
            std::string::npos);
  EXPECT_EQ(folder_entries(dir.path()),
            std::vector<std::string>{"cert_poll.prom"});
}

} // namespace
