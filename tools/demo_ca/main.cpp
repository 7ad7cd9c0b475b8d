// SPDX-License-Identifier: Apache-2.0
// The demo_ca binary: serves the demo CA on a loopback address until SIGINT
// or SIGTERM, for the quick start and the CI smoke test.

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <optional>
#include <pthread.h>
#include <stdexcept>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <openssl/evp.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "demo_ca.hpp"

namespace {

constexpr int exit_failure = 1;
constexpr int exit_usage = 2;

struct CommandLine {
  std::string listen = "127.0.0.1:18443";
  std::string user = "demo";
  std::string password_variable = "DEMO_CA_PASSWORD";
  std::string requests_file;
  std::string root_out;
  std::string ready_file;
  int latency_ms = 0;
  int slow_delay_ms = 5000;
};

struct ListenAddress {
  std::string host;
  int port = 0;
};

struct RequestSpec {
  std::string id;
  std::vector<unsigned char> csr_der;
  demo_ca::Behaviour behaviour = demo_ca::Behaviour::pending;
};

// Parses "HOST:PORT" or "[IPV6]:PORT"; port 0 picks a free port.
ListenAddress parse_listen(const std::string &text) {
  std::size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) {
    throw std::invalid_argument("invalid --listen '" + text +
                                "'; expected HOST:PORT, for example "
                                "127.0.0.1:18443 or [::1]:0");
  }
  ListenAddress address;
  address.host = text.substr(0, colon);
  if (address.host.front() == '[' && address.host.back() == ']') {
    address.host = address.host.substr(1, address.host.size() - 2);
  }
  std::string port = text.substr(colon + 1);
  std::size_t parsed = 0;
  try {
    address.port = std::stoi(port, &parsed);
  } catch (const std::exception &) {
    parsed = 0;
  }
  if (parsed != port.size() || address.port < 0 || address.port > 65535) {
    throw std::invalid_argument("invalid port '" + port + "' in --listen '" +
                                text + "'; use 0 to 65535");
  }
  return address;
}

// Decodes standard or URL-safe base64, with or without padding, as
// acme2certifier stores CSRs in either form.
std::vector<unsigned char> decode_base64(const std::string &text) {
  std::string normalized;
  for (char c : text) {
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') {
      continue;
    }
    if (c == '-') {
      c = '+';
    } else if (c == '_') {
      c = '/';
    }
    normalized.push_back(c);
  }
  if (normalized.size() % 4 == 1) {
    throw std::invalid_argument(
        "invalid base64: a length of 4n+1 characters cannot "
        "be decoded; check that the value is complete");
  }
  while (normalized.size() % 4 != 0) {
    normalized.push_back('=');
  }
  std::vector<unsigned char> bytes(normalized.size() / 4 * 3);
  int length = EVP_DecodeBlock(
      bytes.data(),
      reinterpret_cast<const unsigned char *>(normalized.data()),
      static_cast<int>(normalized.size()));
  if (length < 0) {
    throw std::invalid_argument("invalid base64: it contains a character "
                                "outside the base64 alphabets");
  }
  // EVP_DecodeBlock counts the zero bytes that padding stands for.
  std::size_t padding = normalized.ends_with("==")  ? 2
                        : normalized.ends_with("=") ? 1
                                                    : 0;
  bytes.resize(static_cast<std::size_t>(length) - padding);
  return bytes;
}

RequestSpec parse_request_spec(const nlohmann::json &item) {
  RequestSpec spec;
  spec.id = item.at("id").get<std::string>();
  try {
    spec.csr_der = decode_base64(item.at("csr").get<std::string>());
  } catch (const std::invalid_argument &error) {
    throw std::invalid_argument("invalid CSR for request '" + spec.id +
                                "': " + error.what());
  }
  if (item.contains("behaviour")) {
    try {
      spec.behaviour =
          demo_ca::parse_behaviour(item.at("behaviour").get<std::string>());
    } catch (const std::invalid_argument &error) {
      throw std::invalid_argument("invalid request '" + spec.id +
                                  "': " + error.what());
    }
  }
  return spec;
}

// Reads {"requests": [{"id", "csr", "behaviour"}, ...]}. A missing
// behaviour means pending, so that a person decides with the admin
// endpoints.
std::vector<RequestSpec> read_requests(const std::string &path) {
  std::ifstream file(path);
  if (!file) {
    throw std::invalid_argument("failed to open --requests file '" + path +
                                "'; check the path and its permissions");
  }
  std::vector<RequestSpec> specs;
  try {
    nlohmann::json document = nlohmann::json::parse(file);
    for (const nlohmann::json &item : document.at("requests")) {
      specs.push_back(parse_request_spec(item));
    }
  } catch (const nlohmann::json::exception &error) {
    throw std::invalid_argument(
        "invalid --requests file '" + path +
        "': expected {\"requests\": [{\"id\", \"csr\", \"behaviour\"}]}: " +
        error.what());
  }
  return specs;
}

// Writes through a temporary file and a rename, so that a script waiting
// for the file never reads it half-written.
void write_file_atomically(const std::string &path, const std::string &text) {
  std::string temporary = path + ".tmp";
  {
    std::ofstream file(temporary, std::ios::trunc);
    file << text;
    file.close();
    if (!file) {
      throw std::runtime_error("failed to write '" + temporary +
                               "'; check that its folder exists and is "
                               "writable");
    }
  }
  if (std::rename(temporary.c_str(), path.c_str()) != 0) {
    throw std::runtime_error("failed to rename '" + temporary + "' to '" +
                             path + "'");
  }
}

std::string read_password(const std::string &variable) {
  const char *value = std::getenv(variable.c_str());
  if (value == nullptr || *value == '\0') {
    throw std::invalid_argument("missing password: environment variable '" +
                                variable +
                                "' is not set or empty; set it to the "
                                "password that clients send");
  }
  return value;
}

demo_ca::Options make_options(const CommandLine &command_line) {
  ListenAddress address = parse_listen(command_line.listen);
  demo_ca::Options options;
  options.host = address.host;
  options.port = address.port;
  options.user = command_line.user;
  options.password = read_password(command_line.password_variable);
  options.latency = std::chrono::milliseconds(command_line.latency_ms);
  options.slow_delay = std::chrono::milliseconds(command_line.slow_delay_ms);
  return options;
}

void add_options(CLI::App &app, CommandLine &command_line) {
  app.add_option("--listen",
                 command_line.listen,
                 "loopback HOST:PORT to serve on; port 0 picks a free port")
      ->capture_default_str();
  app.add_option("--user", command_line.user, "basic-auth user name")
      ->capture_default_str();
  app.add_option("--password-variable",
                 command_line.password_variable,
                 "environment variable that contains the basic-auth password")
      ->capture_default_str();
  app.add_option("--requests",
                 command_line.requests_file,
                 "JSON file {\"requests\": [{\"id\", \"csr\" (base64 DER), "
                 "\"behaviour\" (default pending)}]} to register at start")
      ->check(CLI::ExistingFile);
  app.add_option("--root-out",
                 command_line.root_out,
                 "file to write the root CA certificate to, in PEM (the "
                 "trust anchor for ca_bundle)");
  app.add_option("--ready-file",
                 command_line.ready_file,
                 "file to write the base URL to once the server listens");
  app.add_option("--latency-ms",
                 command_line.latency_ms,
                 "delay added to every response, in milliseconds")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--slow-delay-ms",
                 command_line.slow_delay_ms,
                 "delay of requests with behaviour slow, in milliseconds")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
}

// Blocks SIGINT and SIGTERM in this thread and, because threads inherit the
// mask, in every thread started later, so that sigwait() receives them.
sigset_t block_stop_signals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

void serve(demo_ca::DemoCa &ca,
           const CommandLine &command_line,
           const std::vector<RequestSpec> &specs,
           const sigset_t &signals) {
  ca.start();
  for (const RequestSpec &spec : specs) {
    std::string identifier =
        ca.add_request(spec.id, spec.csr_der, spec.behaviour);
    spdlog::info("registered request '{}' with behaviour '{}' at '{}'",
                 spec.id,
                 demo_ca::to_string(spec.behaviour),
                 identifier);
  }
  if (!command_line.root_out.empty()) {
    write_file_atomically(command_line.root_out, ca.root_pem());
  }
  spdlog::info("demo CA listening on '{}'", ca.base_url());
  if (!command_line.ready_file.empty()) {
    write_file_atomically(command_line.ready_file, ca.base_url() + "\n");
  }

  int signal = 0;
  sigwait(&signals, &signal);
  spdlog::info("received signal {}, stopping", signal);
  ca.stop();
  spdlog::info("demo CA stopped");
}

} // namespace

int main(int argc, char **argv) {
  spdlog::set_default_logger(spdlog::stderr_color_mt("demo_ca"));

  CLI::App app{"Serves a stand-in for Insta Certifier's REST API over HTTPS "
               "on a loopback address, with its own demo PKI."};
  CommandLine command_line;
  add_options(app, command_line);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError &error) {
    return app.exit(error) == 0 ? 0 : exit_usage;
  }

  sigset_t signals = block_stop_signals();
  std::optional<demo_ca::DemoCa> ca;
  std::vector<RequestSpec> specs;
  try {
    ca.emplace(make_options(command_line));
    if (!command_line.requests_file.empty()) {
      specs = read_requests(command_line.requests_file);
    }
  } catch (const std::exception &error) {
    spdlog::error("{}", error.what());
    return exit_usage;
  }

  try {
    serve(*ca, command_line, specs, signals);
  } catch (const std::invalid_argument &error) {
    // add_request rejects an invalid id or CSR from the --requests file.
    spdlog::error("{}", error.what());
    return exit_usage;
  } catch (const std::exception &error) {
    spdlog::error("{}", error.what());
    return exit_failure;
  }
  return 0;
}
