// SPDX-License-Identifier: Apache-2.0
#include "cert_poll/config.hpp"

#include <cstdlib>
#include <map>
#include <stdexcept>
#include <string>

#include <gtest/gtest.h>

#include "support/test_support.hpp"

namespace {

using cert_poll::Config;
using cert_poll::EnvironmentLookup;
using cert_poll::ErrorKind;
using cert_poll::IniFile;
using cert_poll::Overrides;
using cert_poll::ProxyList;
using cert_poll::Result;
using test_support::TempDir;
using test_support::write_file;

IniFile parse_or_throw(std::string_view text) {
  Result<IniFile> ini = IniFile::parse(text, "acme_srv.cfg");
  if (!ini) {
    throw std::runtime_error("unexpected parse error: " + ini.error().message);
  }
  return *ini;
}

// The error message of a parse that is expected to fail.
std::string parse_error(std::string_view text) {
  Result<IniFile> ini = IniFile::parse(text, "acme_srv.cfg");
  if (ini) {
    return "(parsed without error)";
  }
  EXPECT_EQ(ini.error().kind, ErrorKind::config);
  return ini.error().message;
}

ProxyList proxies_or_throw(std::string_view json_text) {
  Result<ProxyList> list = ProxyList::parse(json_text);
  if (!list) {
    throw std::runtime_error("unexpected proxy error: " + list.error().message);
  }
  return *list;
}

std::string proxy_error(std::string_view json_text) {
  Result<ProxyList> list = ProxyList::parse(json_text);
  if (list) {
    return "(parsed without error)";
  }
  EXPECT_EQ(list.error().kind, ErrorKind::config);
  return list.error().message;
}

EnvironmentLookup
fake_environment(std::map<std::string, std::string> variables) {
  return [variables = std::move(variables)](
             const std::string &name) -> std::optional<std::string> {
    auto found = variables.find(name);
    if (found == variables.end()) {
      return std::nullopt;
    }
    return found->second;
  };
}

const EnvironmentLookup k_empty_environment = fake_environment({});

// --- IniFile::parse: syntax ---

TEST(IniParse, BothSeparators) {
  IniFile ini = parse_or_throw("[s]\n"
                               "equals = 1\n"
                               "colon: 2\n"
                               "tight=3\n"
                               "tight_colon:4\n");

  EXPECT_EQ(ini.value("s", "equals"), "1");
  EXPECT_EQ(ini.value("s", "colon"), "2");
  EXPECT_EQ(ini.value("s", "tight"), "3");
  EXPECT_EQ(ini.value("s", "tight_colon"), "4");
}

TEST(IniParse, FirstSeparatorWins) {
  IniFile ini = parse_or_throw("[s]\n"
                               "url = http://a:b\n"
                               "api_host: https://ca.example:8443/x=y\n"
                               "key: a = b\n");

  EXPECT_EQ(ini.value("s", "url"), "http://a:b");
  EXPECT_EQ(ini.value("s", "api_host"), "https://ca.example:8443/x=y");
  EXPECT_EQ(ini.value("s", "key"), "a = b");
}

TEST(IniParse, KeyAndValueStripped) {
  IniFile ini = parse_or_throw("[s]\n"
                               "  spaced key \t=   value with spaces  \t\n");

  EXPECT_EQ(ini.value("s", "spaced key"), "value with spaces");
}

TEST(IniParse, EmptyValue) {
  IniFile ini = parse_or_throw("[s]\n"
                               "equals =\n"
                               "colon:\n"
                               "next = 1\n");

  EXPECT_EQ(ini.value("s", "equals"), "");
  EXPECT_EQ(ini.value("s", "colon"), "");
  EXPECT_EQ(ini.value("s", "next"), "1");
}

TEST(IniParse, CommentLines) {
  IniFile ini = parse_or_throw("# hash comment\n"
                               "; semicolon comment\n"
                               "[s]\n"
                               "  # indented hash = not a key\n"
                               "\t; indented semicolon: not a key\n"
                               "key = value\n");

  EXPECT_EQ(ini.value("s", "key"), "value");
  EXPECT_EQ(ini.value("s", "# indented hash"), std::nullopt);
  EXPECT_EQ(ini.value("s", "; indented semicolon"), std::nullopt);
}

TEST(IniParse, NoInlineComments) {
  IniFile ini = parse_or_throw("[s]\n"
                               "hash = b # c\n"
                               "semicolon = b ; c\n");

  EXPECT_EQ(ini.value("s", "hash"), "b # c");
  EXPECT_EQ(ini.value("s", "semicolon"), "b ; c");
}

TEST(IniParse, KeysAreCaseSensitive) {
  IniFile ini = parse_or_throw("[CAhandler]\n"
                               "API_Host = https://ca.example\n"
                               "K = upper\n"
                               "k = lower\n");

  EXPECT_EQ(ini.value("CAhandler", "API_Host"), "https://ca.example");
  EXPECT_EQ(ini.value("CAhandler", "api_host"), std::nullopt);
  EXPECT_EQ(ini.value("CAhandler", "K"), "upper");
  EXPECT_EQ(ini.value("CAhandler", "k"), "lower");
}

TEST(IniParse, ValuesKeepCase) {
  IniFile ini = parse_or_throw("[s]\nca_name = Sub CA One\n");

  EXPECT_EQ(ini.value("s", "ca_name"), "Sub CA One");
}

TEST(IniParse, SectionNamesAreCaseSensitive) {
  IniFile ini = parse_or_throw("[cahandler]\nkey = 1\n");

  EXPECT_TRUE(ini.has_section("cahandler"));
  EXPECT_FALSE(ini.has_section("CAhandler"));
  EXPECT_EQ(ini.value("CAhandler", "key"), std::nullopt);
}

TEST(IniParse, SectionHeaderIgnoresTrailingText) {
  IniFile ini = parse_or_throw("[CAhandler] # the CA\nkey = 1\n");

  EXPECT_TRUE(ini.has_section("CAhandler"));
  EXPECT_EQ(ini.value("CAhandler", "key"), "1");
}

TEST(IniParse, SectionNameNotStripped) {
  IniFile ini = parse_or_throw("[ CAhandler ]\nkey = 1\n");

  EXPECT_TRUE(ini.has_section(" CAhandler "));
  EXPECT_FALSE(ini.has_section("CAhandler"));
}

TEST(IniParse, EmptyText) {
  IniFile ini = parse_or_throw("");

  EXPECT_FALSE(ini.has_section("DEFAULT"));
  EXPECT_EQ(ini.value("DEFAULT", "debug"), std::nullopt);
}

// --- IniFile::parse: [DEFAULT] ---

TEST(IniDefault, InheritedAndOverridden) {
  IniFile ini = parse_or_throw("[DEFAULT]\n"
                               "debug = True\n"
                               "shared = from default\n"
                               "[DBhandler]\n"
                               "shared = from section\n");

  EXPECT_EQ(ini.value("DBhandler", "debug"), "True");
  EXPECT_EQ(ini.value("DBhandler", "shared"), "from section");
  EXPECT_EQ(ini.value("DEFAULT", "shared"), "from default");
  EXPECT_EQ(ini.value("DEFAULT", "debug"), "True");
}

TEST(IniDefault, MissingSectionInheritsNothing) {
  IniFile ini = parse_or_throw("[DEFAULT]\ndebug = True\n[s]\n");

  EXPECT_EQ(ini.value("absent", "debug"), std::nullopt);
  EXPECT_EQ(ini.value("s", "debug"), "True");
}

TEST(IniDefault, NotReportedAsSection) {
  IniFile ini = parse_or_throw("[DEFAULT]\ndebug = True\n[s]\n");

  EXPECT_FALSE(ini.has_section("DEFAULT"));
  EXPECT_TRUE(ini.has_section("s"));
  EXPECT_FALSE(ini.has_section("absent"));
}

TEST(IniDefault, MayRepeat) {
  IniFile ini = parse_or_throw("[DEFAULT]\n"
                               "a = 1\n"
                               "[s]\n"
                               "[DEFAULT]\n"
                               "b = 2\n");

  EXPECT_EQ(ini.value("s", "a"), "1");
  EXPECT_EQ(ini.value("s", "b"), "2");
}

TEST(IniDefault, LowercaseDefaultIsOrdinarySection) {
  IniFile ini = parse_or_throw("[default]\ndebug = True\n[s]\n");

  EXPECT_TRUE(ini.has_section("default"));
  EXPECT_EQ(ini.value("s", "debug"), std::nullopt);
}

// --- IniFile::parse: continuation lines ---

TEST(IniContinuation, JoinedWithNewline) {
  IniFile ini = parse_or_throw("[s]\n"
                               "list = first\n"
                               "  second\n"
                               "\tthird\n"
                               "after = 1\n");

  EXPECT_EQ(ini.value("s", "list"), "first\nsecond\nthird");
  EXPECT_EQ(ini.value("s", "after"), "1");
}

TEST(IniContinuation, EmptyLineInsideKept) {
  IniFile ini = parse_or_throw("[s]\n"
                               "list = first\n"
                               "\n"
                               "   \n"
                               "  second\n"
                               "\n"
                               "\n"
                               "after = 1\n");

  EXPECT_EQ(ini.value("s", "list"), "first\n\n\nsecond");
  EXPECT_EQ(ini.value("s", "after"), "1");
}

TEST(IniContinuation, CommentInsideSkipped) {
  IniFile ini = parse_or_throw("[s]\n"
                               "list = first\n"
                               "  # not part of the value\n"
                               "# nor this\n"
                               "  second\n");

  EXPECT_EQ(ini.value("s", "list"), "first\nsecond");
}

TEST(IniContinuation, AfterEmptyFirstLine) {
  IniFile ini = parse_or_throw("[DEFAULT]\n"
                               "proxy_server_list =\n"
                               "    {\"*\": \"http://proxy:3128\"}\n");

  EXPECT_EQ(ini.value("DEFAULT", "proxy_server_list"),
            "{\"*\": \"http://proxy:3128\"}");
}

TEST(IniContinuation, IndentRelativeToKeyLine) {
  IniFile ini = parse_or_throw("[s]\n"
                               "  indented = a\n"
                               "    deeper = b\n"
                               "  same = c\n");

  EXPECT_EQ(ini.value("s", "indented"), "a\ndeeper = b");
  EXPECT_EQ(ini.value("s", "same"), "c");
}

TEST(IniContinuation, IndentedKeyAfterHeaderIsKey) {
  IniFile ini = parse_or_throw("[s]\n  key = 1\n");

  EXPECT_EQ(ini.value("s", "key"), "1");
}

TEST(IniContinuation, IndentedHeaderTextIsValue) {
  IniFile ini = parse_or_throw("[s]\n"
                               "key = a\n"
                               "  [t]\n");

  EXPECT_EQ(ini.value("s", "key"), "a\n[t]");
  EXPECT_FALSE(ini.has_section("t"));
}

// --- IniFile::parse: encodings and line ends ---

TEST(IniEncoding, Utf8BomAccepted) {
  IniFile ini = parse_or_throw("\xEF\xBB\xBF[DEFAULT]\ndebug = False\n");

  EXPECT_EQ(ini.value("DEFAULT", "debug"), "False");
}

TEST(IniEncoding, CrlfLineEnds) {
  IniFile ini = parse_or_throw("[s]\r\n"
                               "key = value\r\n"
                               "list = a\r\n"
                               "  b\r\n"
                               "\r\n"
                               "empty =\r\n");

  EXPECT_EQ(ini.value("s", "key"), "value");
  EXPECT_EQ(ini.value("s", "list"), "a\nb");
  EXPECT_EQ(ini.value("s", "empty"), "");
}

TEST(IniEncoding, CrlfLineNumbersInErrors) {
  EXPECT_EQ(parse_error("[s]\r\na = 1\r\n\r\na = 2\r\n"),
            "acme_srv.cfg:4: duplicate key 'a' in section [s], first on "
            "line 2: remove one of the two lines");
}

TEST(IniEncoding, BareCarriageReturnEndsLine) {
  IniFile ini = parse_or_throw("[s]\rkey = value\rother = 2\r");

  EXPECT_EQ(ini.value("s", "key"), "value");
  EXPECT_EQ(ini.value("s", "other"), "2");
}

TEST(IniEncoding, Utf8ValueKept) {
  IniFile ini =
      parse_or_throw("[s]\nca_name = Zertifizierungsstelle \xC3\x9C\n");

  EXPECT_EQ(ini.value("s", "ca_name"), "Zertifizierungsstelle \xC3\x9C");
}

// --- IniFile::parse: errors ---

TEST(IniError, MissingSectionHeader) {
  EXPECT_EQ(parse_error("# acme2certifier\n"
                        "\n"
                        "; settings\n"
                        "\n"
                        "\n"
                        "\n"
                        "debug: True\n"),
            "acme_srv.cfg:7: missing section header before key 'debug': "
            "start the file with a [section] line");
}

TEST(IniError, MissingSectionHeaderForAnyLine) {
  EXPECT_EQ(parse_error("garbage\n[s]\n"),
            "acme_srv.cfg:1: missing section header before a line without ':' "
            "or '=': "
            "start the file with a [section] line");
}

TEST(IniError, DuplicateSection) {
  EXPECT_EQ(parse_error("[CAhandler]\n"
                        "a = 1\n"
                        "[DBhandler]\n"
                        "[CAhandler]\n"),
            "acme_srv.cfg:4: duplicate section [CAhandler], first on line 1: "
            "merge the two sections");
}

TEST(IniError, DuplicateKey) {
  EXPECT_EQ(parse_error("[CAhandler]\n"
                        "api_host = https://a\n"
                        "ca_name = x\n"
                        "api_host: https://b\n"),
            "acme_srv.cfg:4: duplicate key 'api_host' in section [CAhandler], "
            "first on line 2: remove one of the two lines");
}

TEST(IniError, DuplicateKeyAcrossDefaultBlocks) {
  EXPECT_EQ(parse_error("[DEFAULT]\n"
                        "debug = True\n"
                        "[s]\n"
                        "[DEFAULT]\n"
                        "debug = False\n"),
            "acme_srv.cfg:5: duplicate key 'debug' in section [DEFAULT], "
            "first on line 2: remove one of the two lines");
}

TEST(IniError, SameKeyInTwoSectionsAllowed) {
  IniFile ini = parse_or_throw("[a]\nkey = 1\n[b]\nkey = 2\n");

  EXPECT_EQ(ini.value("a", "key"), "1");
  EXPECT_EQ(ini.value("b", "key"), "2");
}

TEST(IniError, LineWithoutSeparator) {
  EXPECT_EQ(
      parse_error("[s]\nkey = 1\njust words\n"),
      "acme_srv.cfg:3: invalid line without ':' or '=': expected [section], "
      "key = value or key: value");
}

TEST(IniError, MessagesOmitValues) {
  const std::string secret = "hunter2-not-a-real-secret";

  EXPECT_EQ(parse_error("[s]\napi_password " + secret + "\n").find(secret),
            std::string::npos);
  EXPECT_EQ(parse_error("api_password: " + secret + "\n").find(secret),
            std::string::npos);
  EXPECT_EQ(parse_error("[s]\n= " + secret + "\n").find(secret),
            std::string::npos);
}

TEST(IniError, EmptySectionName) {
  EXPECT_EQ(
      parse_error("[s]\n[]\n"),
      "acme_srv.cfg:2: invalid line without ':' or '=': expected [section], "
      "key = value or key: value");
}

TEST(IniError, MissingKey) {
  EXPECT_EQ(
      parse_error("[s]\n = value\n"),
      "acme_srv.cfg:2: missing key before the separator: write key = value");
}

// --- IniFile::load ---

TEST(IniLoad, ReadsRealFile) {
  TempDir dir;
  write_file(dir / "acme_srv.cfg",
             "[DEFAULT]\ndebug = True\n[DBhandler]\ndbfile = acme.db\n");

  Result<IniFile> ini = IniFile::load(dir / "acme_srv.cfg");

  ASSERT_TRUE(ini.has_value()) << ini.error().message;
  EXPECT_EQ(ini->value("DBhandler", "dbfile"), "acme.db");
  EXPECT_EQ(ini->value("DBhandler", "debug"), "True");
}

TEST(IniLoad, ErrorNamesPathAndLine) {
  TempDir dir;
  const auto path = dir / "acme_srv.cfg";
  write_file(path, "[s]\nbroken\n");

  Result<IniFile> ini = IniFile::load(path);

  ASSERT_FALSE(ini.has_value());
  EXPECT_EQ(ini.error().kind, ErrorKind::config);
  EXPECT_EQ(ini.error().message,
            path.string() +
                ":2: invalid line without ':' or '=': expected [section], "
                "key = value or key: value");
}

TEST(IniLoad, MissingFile) {
  TempDir dir;
  const auto path = dir / "absent.cfg";

  Result<IniFile> ini = IniFile::load(path);

  ASSERT_FALSE(ini.has_value());
  EXPECT_EQ(ini.error().kind, ErrorKind::config);
  EXPECT_EQ(ini.error().message,
            "failed to read configuration file '" + path.string() +
                "': No such file or directory");
}

TEST(IniLoad, FolderInsteadOfFile) {
  TempDir dir;

  Result<IniFile> ini = IniFile::load(dir.path());

  ASSERT_FALSE(ini.has_value());
  EXPECT_EQ(ini.error().kind, ErrorKind::config);
  EXPECT_EQ(ini.error().message,
            "failed to read configuration file '" + dir.path().string() +
                "': Is a directory");
}

// --- parse_bool ---

TEST(ParseBool, ConfigparserStates) {
  const std::map<std::string, bool> states = {
      {"1", true},
      {"yes", true},
      {"true", true},
      {"on", true},
      {"True", true},
      {"YES", true},
      {"On", true},
      {"tRuE", true},
      {"0", false},
      {"no", false},
      {"false", false},
      {"off", false},
      {"False", false},
      {"NO", false},
      {"OFF", false},
      {"fAlSe", false},
  };
  for (const auto &[text, expected] : states) {
    EXPECT_EQ(cert_poll::parse_bool(text), expected) << "text: " << text;
  }
}

TEST(ParseBool, OtherTextRejected) {
  for (const char *text :
       {"", "2", "y", "n", "t", "f", "yes!", "enabled", " true", "true "}) {
    EXPECT_EQ(cert_poll::parse_bool(text), std::nullopt)
        << "text: '" << text << "'";
  }
}

// --- ProxyList ---

TEST(ProxyList, LongestPatternFirst) {
  ProxyList list = proxies_or_throw(R"({"local$": "http://short:1",
                                        "bar.local$": "http://long:2"})");

  EXPECT_EQ(list.proxy_for("foo.bar.local"), "http://long:2");
  EXPECT_EQ(list.proxy_for("foo.local"), "http://short:1");
}

TEST(ProxyList, LongerPatternWinsOverLaterSorting) {
  // Reverse lexicographic order would try "z" first; length decides here.
  ProxyList list = proxies_or_throw(R"({"z": "http://z:1",
                                        "a.example": "http://a:2"})");

  EXPECT_EQ(list.proxy_for("a.example.z"), "http://a:2");
}

TEST(ProxyList, WildcardPrefixDropped) {
  ProxyList list =
      proxies_or_throw(R"({"*.bar.local": "socks5://proxy.bar.local:8080"})");

  EXPECT_EQ(list.proxy_for("host.bar.local"), "socks5://proxy.bar.local:8080");
  EXPECT_EQ(list.proxy_for("bar.local"), "socks5://proxy.bar.local:8080");
  EXPECT_EQ(list.proxy_for("other.example"), std::nullopt);
}

TEST(ProxyList, RegexSearchNotFullMatch) {
  ProxyList list = proxies_or_throw(R"({"ca\\.example": "http://p:1"})");

  EXPECT_EQ(list.proxy_for("api.ca.example.com"), "http://p:1");
  EXPECT_EQ(list.proxy_for("caXexample"), std::nullopt);
}

TEST(ProxyList, StarIsFallback) {
  ProxyList list = proxies_or_throw(R"({"bar.local$": "socks5://p:8080",
                                        "*": "http://proxy:3128"})");

  EXPECT_EQ(list.proxy_for("x.bar.local"), "socks5://p:8080");
  EXPECT_EQ(list.proxy_for("ca.example"), "http://proxy:3128");
  EXPECT_FALSE(list.empty());
}

TEST(ProxyList, NoMatchMeansDirect) {
  ProxyList list = proxies_or_throw(R"({"bar.local$": "socks5://p:8080"})");

  EXPECT_EQ(list.proxy_for("ca.example"), std::nullopt);
}

TEST(ProxyList, EmptyTextGivesEmptyList) {
  ProxyList list = proxies_or_throw("");

  EXPECT_TRUE(list.empty());
  EXPECT_EQ(list.proxy_for("ca.example"), std::nullopt);
}

TEST(ProxyList, EmptyObjectGivesEmptyList) {
  ProxyList list = proxies_or_throw("{}");

  EXPECT_TRUE(list.empty());
}

TEST(ProxyList, InvalidJson) {
  std::string message = proxy_error(R"({"*": "http://proxy:3128")");

  EXPECT_TRUE(
      message.starts_with("[DEFAULT] proxy_server_list is not valid JSON: "))
      << message;
}

TEST(ProxyList, NotAnObject) {
  EXPECT_EQ(proxy_error(R"(["http://proxy:3128"])"),
            "[DEFAULT] proxy_server_list must be a JSON object that maps host "
            "patterns to proxy URLs, not array");
}

TEST(ProxyList, NonStringProxy) {
  EXPECT_EQ(proxy_error(R"({"bar.local$": 8080})"),
            "[DEFAULT] proxy_server_list: the proxy for 'bar.local$' must be "
            "a string, not number");
}

TEST(ProxyList, InvalidRegex) {
  std::string message = proxy_error(R"({"*.bar(local": "http://p:1"})");

  EXPECT_TRUE(message.starts_with("[DEFAULT] proxy_server_list: invalid "
                                  "regular expression 'bar(local': "))
      << message;
}

// --- parse_whole_number ---

TEST(ParseWholeNumber, AcceptsDecimalInRange) {
  EXPECT_EQ(cert_poll::parse_whole_number("1", 1, 128), 1);
  EXPECT_EQ(cert_poll::parse_whole_number("128", 1, 128), 128);
  EXPECT_EQ(cert_poll::parse_whole_number("010", 1, 128), 10);
  EXPECT_EQ(cert_poll::parse_whole_number("-3", -5, 5), -3);
}

TEST(ParseWholeNumber, RejectsOtherText) {
  for (const char *text : {"0",
                           "129",
                           "",
                           " 4",
                           "4 ",
                           "+4",
                           "0x10",
                           "3.5",
                           "1e1",
                           "four",
                           "99999999999999999999"}) {
    EXPECT_EQ(cert_poll::parse_whole_number(text, 1, 128), std::nullopt)
        << text;
  }
}

// --- process_environment ---

TEST(ProcessEnvironment, ReadsVariables) {
  const char *name = "CERT_POLL_CONFIG_TEST_VARIABLE";
  EnvironmentLookup environment = cert_poll::process_environment();

  ::unsetenv(name);
  EXPECT_EQ(environment(name), std::nullopt);

  ::setenv(name, "/etc/acme_srv.cfg", 1);
  EXPECT_EQ(environment(name), "/etc/acme_srv.cfg");
  ::unsetenv(name);
}

// --- load_config ---

constexpr const char *k_full_config = "[DEFAULT]\n"
                                      "debug = True\n"
                                      "proxy_server_list = {\"*\": "
                                      "\"http://proxy:3128\"}\n"
                                      "\n"
                                      "[DBhandler]\n"
                                      "dbfile = /var/lib/acme/acme_srv.db\n"
                                      "\n"
                                      "[CAhandler]\n"
                                      "handler_file = examples/ca_handler/"
                                      "certifier_ca_handler.py\n"
                                      "api_host = https://ca.example\n";

TEST(LoadConfig, PathFromEnvironment) {
  TempDir dir;
  const auto path = dir / "acme_srv.cfg";
  write_file(path, k_full_config);

  Result<Config> config = cert_poll::load_config(
      Overrides{}, fake_environment({{"ACME_SRV_CONFIGFILE", path.string()}}));

  ASSERT_TRUE(config.has_value()) << config.error().message;
  EXPECT_EQ(config->config_file, path);
  EXPECT_TRUE(config->debug);
  EXPECT_EQ(config->db_file, "/var/lib/acme/acme_srv.db");
  EXPECT_EQ(config->handler_file,
            "examples/ca_handler/certifier_ca_handler.py");
  EXPECT_EQ(config->handler, std::nullopt);
  EXPECT_EQ(config->proxies.proxy_for("ca.example"), "http://proxy:3128");
  EXPECT_EQ(config->ini.value("CAhandler", "api_host"), "https://ca.example");
}

TEST(LoadConfig, ConfigFlagWinsOverEnvironment) {
  TempDir dir;
  const auto path = dir / "acme_srv.cfg";
  write_file(path, k_full_config);
  Overrides overrides;
  overrides.config_file = path;

  Result<Config> config = cert_poll::load_config(
      overrides,
      fake_environment({{"ACME_SRV_CONFIGFILE", (dir / "absent").string()}}));

  ASSERT_TRUE(config.has_value()) << config.error().message;
  EXPECT_EQ(config->config_file, path);
}

TEST(LoadConfig, DbFlagWinsOverDbfile) {
  TempDir dir;
  const auto path = dir / "acme_srv.cfg";
  write_file(path, k_full_config);
  Overrides overrides;
  overrides.config_file = path;
  overrides.db_file = dir / "other.db";

  Result<Config> config =
      cert_poll::load_config(overrides, k_empty_environment);

  ASSERT_TRUE(config.has_value()) << config.error().message;
  EXPECT_EQ(config->db_file, dir / "other.db");
}

TEST(LoadConfig, DbFlagWithoutDbfile) {
  TempDir dir;
  const auto path = dir / "acme_srv.cfg";
  write_file(path, "[DEFAULT]\n");
  Overrides overrides;
  overrides.config_file = path;
  overrides.db_file = "acme.db";

  Result<Config> config =
      cert_poll::load_config(overrides, k_empty_environment);

  ASSERT_TRUE(config.has_value()) << config.error().message;
  EXPECT_EQ(config->db_file, "acme.db");
  EXPECT_FALSE(config->debug);
  EXPECT_EQ(config->handler_file, "");
  EXPECT_TRUE(config->proxies.empty());
}

TEST(LoadConfig, JobsDefault) {
  TempDir dir;
  const auto path = dir / "acme_srv.cfg";
  write_file(path, k_full_config);
  Overrides overrides;
  overrides.config_file = path;

  Result<Config> config =
      cert_poll::load_config(overrides, k_empty_environment);

  ASSERT_TRUE(config.has_value()) << config.error().message;
  EXPECT_EQ(config->jobs, cert_poll::k_default_jobs);
}

TEST(LoadConfig, JobsFromSection) {
  TempDir dir;
  const auto path = dir / "acme_srv.cfg";
  write_file(path, std::string(k_full_config) + "\n[cert_poll]\njobs = 32\n");
  Overrides overrides;
  overrides.config_file = path;

  Result<Config> config =
      cert_poll::load_config(overrides, k_empty_environment);

  ASSERT_TRUE(config.has_value()) << config.error().message;
  EXPECT_EQ(config->jobs, 32);
}

TEST(LoadConfig, JobsFlagWinsOverSection) {
  TempDir dir;
  const auto path = dir / "acme_srv.cfg";
  write_file(path, std::string(k_full_config) + "\n[cert_poll]\njobs = 32\n");
  Overrides overrides;
  overrides.config_file = path;
  overrides.jobs = 2;

  Result<Config> config =
      cert_poll::load_config(overrides, k_empty_environment);

  ASSERT_TRUE(config.has_value()) << config.error().message;
  EXPECT_EQ(config->jobs, 2);
}

TEST(LoadConfig, InvalidJobs) {
  for (const char *value : {"0", "-3", "129", "8.5", "many", ""}) {
    TempDir dir;
    const auto path = dir / "acme_srv.cfg";
    write_file(path,
               std::string(k_full_config) + "\n[cert_poll]\njobs = " + value +
                   "\n");
    Overrides overrides;
    overrides.config_file = path;

    Result<Config> config =
        cert_poll::load_config(overrides, k_empty_environment);

    ASSERT_FALSE(config.has_value()) << value;
    EXPECT_EQ(config.error().kind, cert_poll::ErrorKind::config) << value;
    EXPECT_EQ(config.error().message,
              path.string() + ": invalid value '" + value +
                  "' for [cert_poll] jobs: use a whole number from 1 to 128");
  }
}

TEST(LoadConfig, HandlerFlagKept) {
  TempDir dir;
  const auto path = dir / "acme_srv.cfg";
  write_file(path, k_full_config);
  Overrides overrides;
  overrides.config_file = path;
  overrides.handler = "certifier";

  Result<Config> config =
      cert_poll::load_config(overrides, k_empty_environment);

  ASSERT_TRUE(config.has_value()) << config.error().message;
  EXPECT_EQ(config->handler, "certifier");
}

TEST(LoadConfig, DbfileInheritedFromDefault) {
  TempDir dir;
  const auto path = dir / "acme_srv.cfg";
  write_file(path, "[DEFAULT]\ndbfile = shared.db\n[DBhandler]\n");
  Overrides overrides;
  overrides.config_file = path;

  Result<Config> config =
      cert_poll::load_config(overrides, k_empty_environment);

  ASSERT_TRUE(config.has_value()) << config.error().message;
  EXPECT_EQ(config->db_file, "shared.db");
}

TEST(LoadConfig, RelativePathsKept) {
  TempDir dir;
  const auto path = dir / "acme_srv.cfg";
  write_file(path, "[DBhandler]\ndbfile = acme_srv.db\n");
  Overrides overrides;
  overrides.config_file = path;

  Result<Config> config =
      cert_poll::load_config(overrides, k_empty_environment);

  ASSERT_TRUE(config.has_value()) << config.error().message;
  EXPECT_EQ(config->db_file, "acme_srv.db");
}

TEST(LoadConfig, MissingDbfile) {
  TempDir dir;
  const auto path = dir / "acme_srv.cfg";
  write_file(path, "[DEFAULT]\ndebug = False\n[DBhandler]\n");
  Overrides overrides;
  overrides.config_file = path;

  Result<Config> config =
      cert_poll::load_config(overrides, k_empty_environment);

  ASSERT_FALSE(config.has_value());
  EXPECT_EQ(config.error().kind, ErrorKind::config);
  EXPECT_EQ(config.error().message,
            path.string() +
                ": missing [DBhandler] dbfile: set it to the path of the "
                "acme2certifier database or pass --db PATH");
}

TEST(LoadConfig, EmptyDbfileIsMissing) {
  TempDir dir;
  const auto path = dir / "acme_srv.cfg";
  write_file(path, "[DBhandler]\ndbfile =\n");
  Overrides overrides;
  overrides.config_file = path;

  Result<Config> config =
      cert_poll::load_config(overrides, k_empty_environment);

  ASSERT_FALSE(config.has_value());
  EXPECT_EQ(config.error().message,
            path.string() +
                ": missing [DBhandler] dbfile: set it to the path of the "
                "acme2certifier database or pass --db PATH");
}

TEST(LoadConfig, DbfileOfMissingSectionNotInherited) {
  TempDir dir;
  const auto path = dir / "acme_srv.cfg";
  write_file(path, "[DEFAULT]\ndbfile = shared.db\n");
  Overrides overrides;
  overrides.config_file = path;

  Result<Config> config =
      cert_poll::load_config(overrides, k_empty_environment);

  ASSERT_FALSE(config.has_value());
  EXPECT_EQ(config.error().message,
            path.string() +
                ": missing [DBhandler] dbfile: set it to the path of the "
                "acme2certifier database or pass --db PATH");
}

TEST(LoadConfig, NoConfigurationFile) {
  Result<Config> config =
      cert_poll::load_config(Overrides{}, k_empty_environment);

  ASSERT_FALSE(config.has_value());
  EXPECT_EQ(config.error().kind, ErrorKind::config);
  EXPECT_EQ(config.error().message,
            "no configuration file: pass --config PATH or set "
            "ACME_SRV_CONFIGFILE");
}

TEST(LoadConfig, EmptyEnvironmentVariable) {
  Result<Config> config = cert_poll::load_config(
      Overrides{}, fake_environment({{"ACME_SRV_CONFIGFILE", ""}}));

  ASSERT_FALSE(config.has_value());
  EXPECT_EQ(config.error().message,
            "no configuration file: pass --config PATH or set "
            "ACME_SRV_CONFIGFILE");
}

TEST(LoadConfig, MissingFileFromEnvironment) {
  TempDir dir;
  const auto path = dir / "absent.cfg";

  Result<Config> config = cert_poll::load_config(
      Overrides{}, fake_environment({{"ACME_SRV_CONFIGFILE", path.string()}}));

  ASSERT_FALSE(config.has_value());
  EXPECT_EQ(config.error().kind, ErrorKind::config);
  EXPECT_EQ(config.error().message,
            "failed to read configuration file '" + path.string() +
                "' (set by ACME_SRV_CONFIGFILE): No such file or directory");
}

TEST(LoadConfig, MissingFileFromFlag) {
  TempDir dir;
  const auto path = dir / "absent.cfg";
  Overrides overrides;
  overrides.config_file = path;

  Result<Config> config =
      cert_poll::load_config(overrides, k_empty_environment);

  ASSERT_FALSE(config.has_value());
  EXPECT_EQ(config.error().message,
            "failed to read configuration file '" + path.string() +
                "' (set by --config): No such file or directory");
}

TEST(LoadConfig, InvalidDebug) {
  TempDir dir;
  const auto path = dir / "acme_srv.cfg";
  write_file(path, "[DEFAULT]\ndebug = maybe\n[DBhandler]\ndbfile = a.db\n");
  Overrides overrides;
  overrides.config_file = path;

  Result<Config> config =
      cert_poll::load_config(overrides, k_empty_environment);

  ASSERT_FALSE(config.has_value());
  EXPECT_EQ(config.error().kind, ErrorKind::config);
  EXPECT_EQ(config.error().message,
            path.string() +
                ": invalid value 'maybe' for [DEFAULT] debug: use True or "
                "False");
}

TEST(LoadConfig, InvalidProxyList) {
  TempDir dir;
  const auto path = dir / "acme_srv.cfg";
  write_file(path,
             "[DEFAULT]\nproxy_server_list = {\"*\": 3128}\n"
             "[DBhandler]\ndbfile = a.db\n");
  Overrides overrides;
  overrides.config_file = path;

  Result<Config> config =
      cert_poll::load_config(overrides, k_empty_environment);

  ASSERT_FALSE(config.has_value());
  EXPECT_EQ(config.error().kind, ErrorKind::config);
  EXPECT_EQ(config.error().message,
            path.string() +
                ": [DEFAULT] proxy_server_list: the proxy for '*' must be a "
                "string, not number");
}

TEST(LoadConfig, ParseErrorNamesPath) {
  TempDir dir;
  const auto path = dir / "acme_srv.cfg";
  write_file(path, "debug: True\n");
  Overrides overrides;
  overrides.config_file = path;

  Result<Config> config =
      cert_poll::load_config(overrides, k_empty_environment);

  ASSERT_FALSE(config.has_value());
  EXPECT_EQ(config.error().kind, ErrorKind::config);
  EXPECT_EQ(config.error().message,
            path.string() +
                ":1: missing section header before key 'debug': start the "
                "file with a [section] line");
}

} // namespace
