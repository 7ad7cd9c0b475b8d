// SPDX-License-Identifier: Apache-2.0
#include "cert_poll/ca_handler.hpp"

#include "cert_poll/handlers/certifier.hpp"

#include <array>
#include <filesystem>

namespace cert_poll {

namespace {

constexpr std::array<std::string_view, 1> k_supported_handlers{"certifier"};

// acme2certifier names its handler modules "<name>_ca_handler.py".
std::string handler_from_file(const std::string &handler_file) {
  std::string stem = std::filesystem::path(handler_file).stem().string();
  constexpr std::string_view suffix = "_ca_handler";
  if (stem.ends_with(suffix)) {
    stem.resize(stem.size() - suffix.size());
  }
  return stem;
}

std::string supported_list() {
  std::string list;
  for (auto name : k_supported_handlers) {
    list += (list.empty() ? "'" : ", '") + std::string(name) + "'";
  }
  return list;
}

bool is_supported(std::string_view name) {
  for (auto supported : k_supported_handlers) {
    if (supported == name) {
      return true;
    }
  }
  return false;
}

} // namespace

std::span<const std::string_view> supported_handlers() {
  return k_supported_handlers;
}

Result<std::string> select_handler(const Config &config) {
  if (config.handler) {
    if (!is_supported(*config.handler)) {
      return make_error(ErrorKind::usage,
                        "unsupported CA handler '" + *config.handler +
                            "' in --handler: supported handlers are " +
                            supported_list());
    }
    return *config.handler;
  }
  if (config.handler_file.empty()) {
    return make_error(
        ErrorKind::usage,
        "no CA handler: set [CAhandler] handler_file in '" +
            config.config_file.string() +
            "' or pass --handler (supported: " + supported_list() + ")");
  }
  std::string name = handler_from_file(config.handler_file);
  if (!is_supported(name)) {
    return make_error(ErrorKind::usage,
                      "unsupported CA handler '" + config.handler_file +
                          "' in [CAhandler] handler_file: supported handlers "
                          "are " +
                          supported_list());
  }
  return name;
}

Result<std::unique_ptr<CaHandler>>
make_ca_handler(const Config &config, const EnvironmentLookup &environment) {
  auto name = select_handler(config);
  if (!name) {
    return std::unexpected(name.error());
  }
  // Only "certifier" passes select_handler today.
  auto settings =
      read_certifier_settings(config.ini, config.proxies, environment);
  if (!settings) {
    // Name the file, as the messages of load_config do.
    Error error = settings.error();
    error.message = config.config_file.string() + ": " + error.message;
    return std::unexpected(std::move(error));
  }
  auto handler = CertifierHandler::create(std::move(*settings));
  if (!handler) {
    return std::unexpected(handler.error());
  }
  return std::unique_ptr<CaHandler>(std::move(*handler));
}

} // namespace cert_poll
