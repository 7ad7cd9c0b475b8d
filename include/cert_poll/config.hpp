// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "cert_poll/error.hpp"

#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cert_poll {

// An INI file read with the rules of Python's configparser as acme2certifier
// uses it (interpolation off): `[section]` headers, `key: value` or
// `key = value`, full-line comments starting with `#` or `;`, no inline
// comments, case-sensitive keys, indented continuation lines, and the
// `[DEFAULT]` section visible from every other section.
class IniFile {
public:
  // Parses `text`. `source_name` (usually the path) goes into error messages,
  // which also carry the line number.
  static Result<IniFile> parse(std::string_view text, std::string source_name);

  // Reads and parses the file at `path`.
  static Result<IniFile> load(const std::filesystem::path &path);

  // Returns the value of `key` in `section`, else in [DEFAULT]; nullopt when
  // neither has it. Surrounding white space is stripped; continuation lines
  // are joined with '\n'.
  std::optional<std::string> value(std::string_view section,
                                   std::string_view key) const;

  bool has_section(std::string_view section) const;

private:
  using Section = std::map<std::string, std::string, std::less<>>;
  std::map<std::string, Section, std::less<>> m_sections;
  Section m_defaults;
};

// Parses a configparser boolean: 1/yes/true/on or 0/no/false/off, any case.
std::optional<bool> parse_bool(std::string_view text);

// Parses decimal digits, with an optional leading '-', as a whole number
// from `minimum` to `maximum`. Returns nullopt for anything else, such as
// white space, a sign '+', hexadecimal or a fraction.
std::optional<int>
parse_whole_number(std::string_view text, int minimum, int maximum);

// Proxy choice from `[DEFAULT] proxy_server_list`: a JSON object that maps a
// host regex (or `*`) to a proxy URL.
class ProxyList {
public:
  // Parses the JSON object text. An empty string gives an empty list.
  static Result<ProxyList> parse(std::string_view json_text);

  // Returns the proxy URL for `host`: a leading `*.` of a key is dropped,
  // longer keys are tried first as regex searches, `*` is the fallback.
  // nullopt means a direct connection.
  std::optional<std::string> proxy_for(std::string_view host) const;

  bool empty() const { return m_rules.empty() && !m_fallback; }

private:
  struct Rule {
    std::string pattern;
    std::string proxy_url;
  };
  std::vector<Rule> m_rules; // longest pattern first
  std::optional<std::string> m_fallback;
};

// Looks up an environment variable; injectable so that tests need not touch
// the process environment.
using EnvironmentLookup =
    std::function<std::optional<std::string>(const std::string &name)>;

// The process environment as an EnvironmentLookup.
EnvironmentLookup process_environment();

// Values given on the command line, which win over the configuration file.
struct Overrides {
  std::optional<std::filesystem::path> config_file;
  std::optional<std::filesystem::path> db_file;
  std::optional<std::string> handler;
  std::optional<int> jobs;
};

// The number of requests polled at once unless [cert_poll] jobs or --jobs
// set it: enough to hide the CA's latency, few enough for a CA to tolerate.
constexpr int k_default_jobs = 8;
// The largest value jobs accepts, each job being one thread and at most one
// connection to the CA.
constexpr int k_max_jobs = 128;

// The settings a poll run needs before it picks a CA handler. Handler
// settings are read by the handler itself from `ini`.
struct Config {
  std::filesystem::path config_file;
  bool debug = false;                 // [DEFAULT] debug
  std::filesystem::path db_file;      // --db, else [DBhandler] dbfile
  std::string handler_file;           // [CAhandler] handler_file, may be empty
  std::optional<std::string> handler; // --handler
  ProxyList proxies;                  // [DEFAULT] proxy_server_list
  int jobs = k_default_jobs;          // --jobs, else [cert_poll] jobs
  IniFile ini;
};

// Finds the configuration file (--config, else $ACME_SRV_CONFIGFILE), reads
// it and applies `overrides`. Relative paths stay relative to the working
// directory, as acme2certifier treats them. Fails with ErrorKind::config.
Result<Config> load_config(const Overrides &overrides,
                           const EnvironmentLookup &environment);

} // namespace cert_poll
