// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "cert_poll/ca_handler.hpp"
#include "cert_poll/config.hpp"
#include "cert_poll/http.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace cert_poll {

namespace detail {
// The issuer resources that a CertifierHandler fetched, in certifier.cpp.
struct CertifierIssuerCache;
} // namespace detail

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
//
// poll() is thread-safe. Each issuer CA link is resolved once for the
// handler's lifetime: its active certificate link, and that certificate's DER
// and issuer link, are reused by later polls. So an issued certificate whose
// issuers were seen before costs two requests, the request status and the
// leaf certificate. A failed fetch is not kept.
class CertifierHandler final : public CaHandler {
public:
  // The maximum number of certificates followed, so that an issuer loop ends.
  static constexpr int max_chain_length = 8;

  static Result<std::unique_ptr<CertifierHandler>>
  create(CertifierSettings settings);
  ~CertifierHandler() override;
  CertifierHandler(const CertifierHandler &) = delete;
  CertifierHandler &operator=(const CertifierHandler &) = delete;

  std::string_view name() const override { return "certifier"; }
  PollResult poll(const PendingRequest &request) override;
  void set_deadline(
      std::optional<std::chrono::steady_clock::time_point> deadline) override {
    m_client.set_deadline(deadline);
  }
  void set_stop_flag(const std::atomic<bool> *stop_requested) override {
    m_client.set_stop_flag(stop_requested);
  }
  std::uint64_t requests_sent() const override {
    return m_client.requests_sent();
  }

private:
  CertifierHandler(CertifierSettings settings, HttpClient client);

  CertifierSettings m_settings;
  HttpClient m_client;
  std::unique_ptr<detail::CertifierIssuerCache> m_issuers;
};

} // namespace cert_poll
