// SPDX-License-Identifier: Apache-2.0
#include "cert_poll/config.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <regex>
#include <utility>

#include <nlohmann/json.hpp>

namespace cert_poll {

namespace {

constexpr std::string_view k_default_section = "DEFAULT";
constexpr std::string_view k_whitespace = " \t\n\r\f\v";
constexpr std::string_view k_utf8_bom = "\xEF\xBB\xBF";

using Section = std::map<std::string, std::string, std::less<>>;
using Sections = std::map<std::string, Section, std::less<>>;

std::string_view strip(std::string_view text) {
  std::size_t first = text.find_first_not_of(k_whitespace);
  if (first == std::string_view::npos) {
    return {};
  }
  std::size_t last = text.find_last_not_of(k_whitespace);
  return text.substr(first, last - first + 1);
}

std::string quote(std::string_view text) {
  return "'" + std::string(text) + "'";
}

// Names a line in an error message by its key only, because the value may be
// a password that must not reach a log or a cron mail.
std::string describe_line(std::string_view text) {
  std::size_t separator = text.find_first_of(":=");
  if (separator == std::string_view::npos) {
    return "a line without ':' or '='";
  }
  return "key " + quote(strip(text.substr(0, separator)));
}

// Splits at "\n", "\r\n" and "\r", the line ends that Python's universal
// newlines mode accepts when configparser reads a file.
std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find_first_of("\r\n", start);
    if (end == std::string_view::npos) {
      lines.push_back(text.substr(start));
      break;
    }
    lines.push_back(text.substr(start, end - start));
    bool crlf =
        text[end] == '\r' && end + 1 < text.size() && text[end + 1] == '\n';
    start = end + (crlf ? 2 : 1);
  }
  return lines;
}

// One pass of configparser's RawConfigParser._read over the lines of a file,
// with its defaults: strict, comment prefixes '#' and ';' on full lines only,
// empty lines kept inside multi-line values.
//
// Keys are case-sensitive. configparser lowercases keys by default, but
// acme2certifier's load_config() sets `optionxform = str`, so it reads
// `API_host` and `api_host` as two keys, and so does this reader.
class IniReader {
public:
  using Lines = std::vector<std::string>;
  using RawSection = std::map<std::string, Lines, std::less<>>;

  explicit IniReader(std::string source) : m_source(std::move(source)) {}

  Result<void> read_line(std::size_t number, std::string_view line);

  // Returns the sections by name, [DEFAULT] included, with each value's
  // lines joined with '\n' and stripped.
  Sections finish() const;

private:
  std::unexpected<Error> error_at(std::size_t number,
                                  const std::string &message) const;
  Result<void> start_section(std::size_t number, std::string name);
  Result<void> add_option(std::size_t number, std::string_view text);

  std::string m_source;
  std::map<std::string, RawSection, std::less<>> m_sections;
  std::map<std::string, std::size_t, std::less<>> m_section_lines;
  std::map<std::pair<std::string, std::string>, std::size_t> m_key_lines;
  std::string m_section_name;
  RawSection *m_section = nullptr; // nullptr until the first header
  Lines *m_value = nullptr;        // the option that continuation lines extend
  std::size_t m_indent = 0;        // indent of the last header or option line
};

std::unexpected<Error> IniReader::error_at(std::size_t number,
                                           const std::string &message) const {
  return make_error(ErrorKind::config,
                    m_source + ":" + std::to_string(number) + ": " + message);
}

Result<void> IniReader::read_line(std::size_t number, std::string_view line) {
  std::string_view text = strip(line);

  // A comment line, even an indented one, neither ends nor extends a
  // multi-line value. An empty line inside one is kept.
  if (text.starts_with('#') || text.starts_with(';')) {
    return {};
  }
  if (text.empty()) {
    if (m_value != nullptr) {
      m_value->emplace_back();
    }
    return {};
  }

  std::size_t indent = line.find_first_not_of(k_whitespace);
  if (m_value != nullptr && indent > m_indent) {
    m_value->emplace_back(text);
    return {};
  }
  m_indent = indent;

  // Like configparser's SECTCRE: '[' at the start and the last ']' on the line
  // enclose a non-empty name, and anything after that ']' is ignored.
  std::size_t close = text.rfind(']');
  if (text.starts_with('[') && close != std::string_view::npos && close > 1) {
    return start_section(number, std::string(text.substr(1, close - 1)));
  }
  if (m_section == nullptr) {
    return error_at(number,
                    "missing section header before " + describe_line(text) +
                        ": start the file with a [section] line");
  }
  return add_option(number, text);
}

Result<void> IniReader::start_section(std::size_t number, std::string name) {
  // configparser lets [DEFAULT] appear more than once, but no other section.
  if (name != k_default_section) {
    auto [found, inserted] = m_section_lines.try_emplace(name, number);
    if (!inserted) {
      return error_at(number,
                      "duplicate section [" + name + "], first on line " +
                          std::to_string(found->second) +
                          ": merge the two sections");
    }
  }
  m_section = &m_sections[name];
  m_section_name = std::move(name);
  m_value = nullptr;
  return {};
}

Result<void> IniReader::add_option(std::size_t number, std::string_view text) {
  // The first ':' or '=' separates the key from the value.
  std::size_t separator = text.find_first_of(":=");
  if (separator == std::string_view::npos) {
    return error_at(number,
                    "invalid line without ':' or '=': expected [section], "
                    "key = value or key: value");
  }
  std::string key(strip(text.substr(0, separator)));
  if (key.empty()) {
    return error_at(number,
                    "missing key before the separator: write key = value");
  }

  auto [found, inserted] =
      m_key_lines.try_emplace(std::pair(m_section_name, key), number);
  if (!inserted) {
    return error_at(number,
                    "duplicate key " + quote(key) + " in section [" +
                        m_section_name + "], first on line " +
                        std::to_string(found->second) +
                        ": remove one of the two lines");
  }
  m_value = &(*m_section)[key];
  m_value->emplace_back(strip(text.substr(separator + 1)));
  return {};
}

Sections IniReader::finish() const {
  Sections sections;
  for (const auto &[name, options] : m_sections) {
    auto &section = sections[name];
    for (const auto &[key, lines] : options) {
      std::string joined;
      for (std::size_t i = 0; i < lines.size(); ++i) {
        joined += (i == 0 ? "" : "\n") + lines[i];
      }
      // configparser strips only the end, which drops trailing empty lines.
      // This reader also strips the start, so `key =` followed by an
      // indented line gives that line's text without a leading '\n'.
      section[key] = std::string(strip(joined));
    }
  }
  return sections;
}

// Reads the whole file. `origin` is added after the path in the error
// message, to say where the path came from.
Result<std::string> read_text(const std::filesystem::path &path,
                              std::string_view origin) {
  auto fail = [&](int error_number) {
    return make_error(ErrorKind::config,
                      "failed to read configuration file " +
                          quote(path.string()) + std::string(origin) + ": " +
                          std::strerror(error_number));
  };

  errno = 0;
  std::unique_ptr<std::FILE, int (*)(std::FILE *)> file(
      std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!file) {
    return fail(errno);
  }
  std::string text;
  char buffer[8192];
  std::size_t count = 0;
  while ((count = std::fread(buffer, 1, sizeof buffer, file.get())) > 0) {
    text.append(buffer, count);
  }
  if (std::ferror(file.get()) != 0) {
    return fail(errno); // EISDIR for a folder, EIO for a failing disk
  }
  return text;
}

} // namespace

Result<IniFile> IniFile::parse(std::string_view text, std::string source_name) {
  if (text.starts_with(k_utf8_bom)) {
    text.remove_prefix(k_utf8_bom.size());
  }

  IniReader reader(std::move(source_name));
  std::vector<std::string_view> lines = split_lines(text);
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (auto read = reader.read_line(i + 1, lines[i]); !read) {
      return std::unexpected(read.error());
    }
  }

  IniFile ini;
  ini.m_sections = reader.finish();
  if (auto defaults = ini.m_sections.find(k_default_section);
      defaults != ini.m_sections.end()) {
    ini.m_defaults = std::move(defaults->second);
    ini.m_sections.erase(defaults);
  }
  return ini;
}

Result<IniFile> IniFile::load(const std::filesystem::path &path) {
  Result<std::string> text = read_text(path, "");
  if (!text) {
    return std::unexpected(text.error());
  }
  return parse(*text, path.string());
}

std::optional<std::string> IniFile::value(std::string_view section,
                                          std::string_view key) const {
  // Like a configparser section proxy: a section that is not in the file has
  // no values, not even those of [DEFAULT].
  if (section != k_default_section) {
    auto found_section = m_sections.find(section);
    if (found_section == m_sections.end()) {
      return std::nullopt;
    }
    auto found = found_section->second.find(key);
    if (found != found_section->second.end()) {
      return found->second;
    }
  }
  auto fallback = m_defaults.find(key);
  if (fallback != m_defaults.end()) {
    return fallback->second;
  }
  return std::nullopt;
}

bool IniFile::has_section(std::string_view section) const {
  // Like configparser's has_section(), [DEFAULT] does not count.
  return m_sections.contains(section);
}

std::optional<bool> parse_bool(std::string_view text) {
  std::string lower(text);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](char c) {
    return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  });
  if (lower == "1" || lower == "yes" || lower == "true" || lower == "on") {
    return true;
  }
  if (lower == "0" || lower == "no" || lower == "false" || lower == "off") {
    return false;
  }
  return std::nullopt;
}

std::optional<int>
parse_whole_number(std::string_view text, int minimum, int maximum) {
  int number = 0;
  const char *end = text.data() + text.size();
  const auto [stop, code] = std::from_chars(text.data(), end, number);
  if (code != std::errc() || stop != end || number < minimum ||
      number > maximum) {
    return std::nullopt;
  }
  return number;
}

Result<ProxyList> ProxyList::parse(std::string_view json_text) {
  const std::string prefix = "[DEFAULT] proxy_server_list";
  ProxyList list;
  if (strip(json_text).empty()) {
    return list;
  }

  nlohmann::json object;
  try {
    object = nlohmann::json::parse(json_text);
  } catch (const nlohmann::json::parse_error &error) {
    return make_error(ErrorKind::config,
                      prefix + " is not valid JSON: " + error.what());
  }
  if (!object.is_object()) {
    return make_error(ErrorKind::config,
                      prefix +
                          " must be a JSON object that maps host "
                          "patterns to proxy URLs, not " +
                          std::string(object.type_name()));
  }

  for (const auto &[key, proxy] : object.items()) {
    if (!proxy.is_string()) {
      return make_error(ErrorKind::config,
                        prefix + ": the proxy for " + quote(key) +
                            " must be a string, not " +
                            std::string(proxy.type_name()));
    }
    std::string pattern = key.starts_with("*.") ? key.substr(2) : key;
    if (pattern == "*") {
      list.m_fallback = proxy.get<std::string>();
      continue;
    }
    try {
      std::regex check(pattern, std::regex::ECMAScript);
    } catch (const std::regex_error &error) {
      return make_error(ErrorKind::config,
                        prefix + ": invalid regular expression " +
                            quote(pattern) + ": " + error.what());
    }
    list.m_rules.push_back({std::move(pattern), proxy.get<std::string>()});
  }

  // Longest pattern first. acme2certifier's proxy_check() sorts in reverse
  // lexicographic order instead, which is the tie-break here.
  // NOTE: when two patterns match a host, the proxy can differ from
  // acme2certifier's. For "z.com" and "a.example.com" this picks the longer
  // pattern, and acme2certifier picks "z.com".
  std::sort(list.m_rules.begin(),
            list.m_rules.end(),
            [](const Rule &left, const Rule &right) {
              if (left.pattern.size() != right.pattern.size()) {
                return left.pattern.size() > right.pattern.size();
              }
              return left.pattern > right.pattern;
            });
  return list;
}

std::optional<std::string> ProxyList::proxy_for(std::string_view host) const {
  const std::string subject(host);
  for (const Rule &rule : m_rules) {
    try {
      // parse() compiled every pattern once already, so only a search that
      // exceeds std::regex's complexity or stack limits can throw here.
      if (std::regex_search(subject,
                            std::regex(rule.pattern, std::regex::ECMAScript))) {
        return rule.proxy_url;
      }
    } catch (const std::regex_error &) {
      continue;
    }
  }
  return m_fallback;
}

EnvironmentLookup process_environment() {
  return [](const std::string &name) -> std::optional<std::string> {
    const char *value = std::getenv(name.c_str());
    if (value == nullptr) {
      return std::nullopt;
    }
    return std::string(value);
  };
}

namespace {

// The configuration file's path and, for error messages, where it came from.
struct ConfigLocation {
  std::filesystem::path path;
  std::string_view origin;
};

Result<ConfigLocation>
locate_config_file(const Overrides &overrides,
                   const EnvironmentLookup &environment) {
  if (overrides.config_file && !overrides.config_file->empty()) {
    return ConfigLocation{*overrides.config_file, " (set by --config)"};
  }
  if (auto path = environment("ACME_SRV_CONFIGFILE"); path && !path->empty()) {
    return ConfigLocation{*path, " (set by ACME_SRV_CONFIGFILE)"};
  }
  return make_error(
      ErrorKind::config,
      "no configuration file: pass --config PATH or set ACME_SRV_CONFIGFILE");
}

Result<bool> read_debug(const IniFile &ini, const std::string &source) {
  std::optional<std::string> debug = ini.value(k_default_section, "debug");
  if (!debug) {
    return false;
  }
  std::optional<bool> flag = parse_bool(*debug);
  if (!flag) {
    return make_error(ErrorKind::config,
                      source + ": invalid value " + quote(*debug) +
                          " for [DEFAULT] debug: use True or False");
  }
  return *flag;
}

// Reads [cert_poll] jobs unless --jobs set it, which main() has checked.
Result<int> read_jobs(const IniFile &ini,
                      const Overrides &overrides,
                      const std::string &source) {
  if (overrides.jobs) {
    return *overrides.jobs;
  }
  std::optional<std::string> text = ini.value("cert_poll", "jobs");
  if (!text) {
    return k_default_jobs;
  }
  std::optional<int> jobs = parse_whole_number(*text, 1, k_max_jobs);
  if (!jobs) {
    return make_error(ErrorKind::config,
                      source + ": invalid value " + quote(*text) +
                          " for [cert_poll] jobs: use a whole number from 1 "
                          "to " +
                          std::to_string(k_max_jobs));
  }
  return *jobs;
}

Result<std::filesystem::path> read_db_file(const IniFile &ini,
                                           const Overrides &overrides,
                                           const std::string &source) {
  if (overrides.db_file) {
    return *overrides.db_file;
  }
  std::optional<std::string> dbfile = ini.value("DBhandler", "dbfile");
  if (!dbfile || dbfile->empty()) {
    return make_error(ErrorKind::config,
                      source + ": missing [DBhandler] dbfile: set it to the "
                               "path of the acme2certifier database or pass "
                               "--db PATH");
  }
  return *dbfile;
}

Result<ProxyList> read_proxies(const IniFile &ini, const std::string &source) {
  std::optional<std::string> text =
      ini.value(k_default_section, "proxy_server_list");
  Result<ProxyList> list = ProxyList::parse(text.value_or(""));
  if (!list) {
    return make_error(ErrorKind::config, source + ": " + list.error().message);
  }
  return list;
}

} // namespace

Result<Config> load_config(const Overrides &overrides,
                           const EnvironmentLookup &environment) {
  Result<ConfigLocation> location = locate_config_file(overrides, environment);
  if (!location) {
    return std::unexpected(location.error());
  }
  Result<std::string> text = read_text(location->path, location->origin);
  if (!text) {
    return std::unexpected(text.error());
  }
  const std::string source = location->path.string();
  Result<IniFile> ini = IniFile::parse(*text, source);
  if (!ini) {
    return std::unexpected(ini.error());
  }

  Result<bool> debug = read_debug(*ini, source);
  if (!debug) {
    return std::unexpected(debug.error());
  }
  Result<std::filesystem::path> db_file = read_db_file(*ini, overrides, source);
  if (!db_file) {
    return std::unexpected(db_file.error());
  }
  Result<ProxyList> proxies = read_proxies(*ini, source);
  if (!proxies) {
    return std::unexpected(proxies.error());
  }
  Result<int> jobs = read_jobs(*ini, overrides, source);
  if (!jobs) {
    return std::unexpected(jobs.error());
  }

  Config config;
  config.config_file = location->path;
  config.debug = *debug;
  config.db_file = std::move(*db_file);
  config.handler_file = ini->value("CAhandler", "handler_file").value_or("");
  config.handler = overrides.handler;
  config.proxies = std::move(*proxies);
  config.jobs = *jobs;
  config.ini = std::move(*ini);
  return config;
}

} // namespace cert_poll
