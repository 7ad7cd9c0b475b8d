// SPDX-License-Identifier: Apache-2.0
#pragma once

// A small stand-in for Insta Certifier's REST API, for the quick start and
// the integration tests. It serves HTTPS on a loopback address only, with
// its own root -> intermediate PKI that signs real certificates from the
// CSRs it is given.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace demo_ca {

// How the CA responds to one request. The first three are the decisions a
// CA operator makes; the rest are faults for tests.
enum class Behaviour {
  approve,        // status "accepted", certificate signed from the CSR
  reject,         // status "rejected"
  pending,        // status "pending"
  unknown_status, // status "on-hold-forever", a value the API never sends
  server_error,   // HTTP 500 on the request resource
  invalid_json,   // 200 with a body that is not JSON
  missing_certificate_base64, // certificate resource without the field
  leaf_only,                  // certificate resource without issuer link
  wrong_key,                  // certificate signed for a different public key
  slow, // request resource responds after Options::slow_delay
};

// Parses "approve", "reject", ... (the enumerator names); throws
// std::invalid_argument for anything else.
Behaviour parse_behaviour(std::string_view text);
std::string_view to_string(Behaviour behaviour);

struct Options {
  std::string host = "127.0.0.1"; // must be a loopback address
  int port = 0;                   // 0 picks a free port
  std::string user = "demo";
  std::string password;                 // basic-auth password the CA accepts
  std::chrono::milliseconds latency{0}; // added to every response
  std::chrono::milliseconds slow_delay{5000}; // for Behaviour::slow
  // When false, received() stays empty, so that a long benchmark run does
  // not grow the CA's memory by about 100 bytes per request.
  bool record_requests = true;
  // The number of connections served at once. Further connections wait in
  // the accept queue, and an idle keep-alive connection keeps its thread for
  // up to 1 s.
  std::size_t worker_threads = 32;
};

// One HTTP request as the server received it, for tests that assert what
// reached the server. The Authorization header itself is never stored.
struct ReceivedRequest {
  std::string method;
  std::string path;
  bool had_authorization = false;
  bool credentials_valid = false;
};

class DemoCa {
public:
  // Creates the PKI (root, intermediate, TLS server certificate for
  // 127.0.0.1, ::1 and localhost). Throws std::invalid_argument for a
  // non-loopback host, an empty password, a user name containing ':' or
  // zero worker_threads.
  explicit DemoCa(Options options);
  ~DemoCa();
  DemoCa(const DemoCa &) = delete;
  DemoCa &operator=(const DemoCa &) = delete;

  // Binds and serves on a background thread; throws std::runtime_error when
  // the address cannot be bound. stop() (also run by the destructor) ends it.
  void start();
  void stop();

  int port() const;
  std::string base_url() const; // "https://127.0.0.1:<port>"

  // The root certificate in PEM: the trust anchor for ca_bundle. It signs
  // both the intermediate and the TLS server certificate.
  std::string root_pem() const;

  // Registers a request for the DER CSR under `id` and returns its poll
  // identifier, "<base_url>/v1/requests/<id>". Thread-safe. Call it after
  // start(), because the identifier contains the bound port. Before start()
  // it throws std::logic_error. Throws std::invalid_argument for an id with
  // characters outside [A-Za-z0-9._~-] or a CSR that does not parse or
  // verify; set_behaviour throws it for an unknown id.
  std::string add_request(const std::string &id,
                          const std::vector<unsigned char> &csr_der,
                          Behaviour behaviour);
  void set_behaviour(const std::string &id, Behaviour behaviour);

  // The requests received since start, in arrival order; empty when
  // Options::record_requests is false.
  std::vector<ReceivedRequest> received() const;
  void clear_received();

  // HTTP requests received since the CA was created, counted also when
  // Options::record_requests is false. clear_received() does not reset it.
  std::uint64_t requests_received() const;

private:
  struct Impl;
  std::unique_ptr<Impl> m_impl;
};

} // namespace demo_ca
