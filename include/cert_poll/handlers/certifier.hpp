// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "cert_poll/ca_handler.hpp"
#include "cert_poll/config.hpp"
#include "cert_poll/http.hpp"

#include <chrono>
#include <memory>
#include <string>

namespace cert_poll {

// The [CAhandler] keys of the Insta Certifier handler.
struct CertifierSettings {
  std::string api_host; // base URL, e.g. https://certifier.example:8443
  BasicCredentials credentials;
  std::string ca_name;
  HttpOptions http;
};

// Reads the certifier keys: api_host, api_user or api_user_variable,
// api_password or api_password_variable, ca_name, ca_bundle (True, False or
// a path), request_timeout (seconds). Fails with ErrorKind::config naming the
// key and the fix.
Result<CertifierSettings>
read_certifier_settings(const IniFile &ini,
                        const ProxyList &proxies,
                        const EnvironmentLookup &environment);

// Polls Insta Certifier's REST API: the request resource, then the issued
// certificate, then its issuers until a CA certificate names no issuer.
class CertifierHandler final : public CaHandler {
public:
  // The maximum number of certificates followed, so that an issuer loop ends.
  static constexpr int max_chain_length = 8;

  static Result<std::unique_ptr<CertifierHandler>>
  create(CertifierSettings settings);

  std::string_view name() const override { return "certifier"; }
  PollResult poll(const PendingRequest &request) override;
  void set_deadline(
      std::optional<std::chrono::steady_clock::time_point> deadline) override {
    m_client.set_deadline(deadline);
  }
  void set_stop_flag(const std::atomic<bool> *stop_requested) override {
    m_client.set_stop_flag(stop_requested);
  }

private:
  CertifierHandler(CertifierSettings settings, HttpClient client);

  CertifierSettings m_settings;
  HttpClient m_client;
};

} // namespace cert_poll
