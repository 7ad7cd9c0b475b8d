// SPDX-License-Identifier: Apache-2.0
#pragma once

// A throwaway TLS identity for 127.0.0.1, and a small httplib server with its
// own thread for tests that need an HTTP or HTTPS peer they control.

#include "cert_poll/http.hpp"

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

namespace test_support {

// A certificate with its private key, and the certificate as PEM and DER.
struct TestCertificate {
  std::shared_ptr<X509> cert;
  std::shared_ptr<EVP_PKEY> key;
  std::string pem;
  std::vector<unsigned char> der;
};

// Makes a self-signed CA certificate for 127.0.0.1 and localhost, which is
// its own trust anchor. Each call uses a new serial number. Throws
// std::runtime_error when an OpenSSL call fails.
TestCertificate make_self_signed(const std::string &common_name);

// The names and validity of a make_self_signed certificate.
struct CertificateOptions {
  // In OpenSSL's X509v3 configuration syntax.
  std::string subject_alt_name = "IP:127.0.0.1,DNS:localhost";
  // Seconds from now, negative for the past.
  long not_before_offset = -60;
  long not_after_offset = 3600;
};

// Makes a self-signed CA certificate as above, with other names or
// validity, e.g. an expired one or one for another host.
TestCertificate make_self_signed(const std::string &common_name,
                                 const CertificateOptions &options);

// What a test server received, recorded before the route handler runs.
struct SeenRequest {
  std::string path;
  std::string authorization;
  std::string accept;
  std::string user_agent;
  int remote_port = 0;
};

// An httplib server on 127.0.0.1 with an ephemeral port and its own thread.
class TestServer {
public:
  // Plain HTTP.
  TestServer();

  // HTTPS with `identity`. TLS handshakes are counted, so that a test can
  // assert that not even a connection arrived.
  explicit TestServer(const TestCertificate &identity);

  ~TestServer();
  TestServer(const TestServer &) = delete;
  TestServer &operator=(const TestServer &) = delete;

  httplib::Server &routes() { return *m_server; }

  // Binds an ephemeral port and serves on a background thread. Throws
  // std::runtime_error when no port can be bound.
  void start();

  std::string url(const std::string &path) const;
  cert_poll::Origin origin() const;

  std::vector<SeenRequest> seen() const;
  int handshakes() const { return m_handshakes; }

  // Sleeps up to `duration`, returning early when the server stops.
  void sleep_unless_stopping(std::chrono::milliseconds duration) const;

private:
  void record();

  std::unique_ptr<httplib::Server> m_server;
  bool m_tls = false;
  int m_port = 0;
  std::thread m_thread;
  std::atomic<bool> m_stopping{false};
  std::atomic<int> m_handshakes{0};
  mutable std::mutex m_mutex;
  std::vector<SeenRequest> m_seen;
};

} // namespace test_support
