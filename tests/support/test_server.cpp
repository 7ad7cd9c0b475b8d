// SPDX-License-Identifier: Apache-2.0
#include "support/test_server.hpp"

#include <stdexcept>

#include <openssl/pem.h>
#include <openssl/x509v3.h>

namespace test_support {

namespace {

void require(bool condition, const char *call) {
  if (!condition) {
    throw std::runtime_error(std::string("OpenSSL call failed: ") + call);
  }
}

void add_extension(X509 *cert, int nid, const char *value) {
  X509V3_CTX context;
  X509V3_set_ctx_nodb(&context);
  X509V3_set_ctx(&context, cert, cert, nullptr, nullptr, 0);
  X509_EXTENSION *extension =
      X509V3_EXT_conf_nid(nullptr, &context, nid, value);
  require(extension != nullptr, "X509V3_EXT_conf_nid");
  require(X509_add_ext(cert, extension, -1) == 1, "X509_add_ext");
  X509_EXTENSION_free(extension);
}

} // namespace

TestCertificate make_self_signed(const std::string &common_name) {
  return make_self_signed(common_name, CertificateOptions{});
}

TestCertificate make_self_signed(const std::string &common_name,
                                 const CertificateOptions &options) {
  static std::atomic<long> serial{1};
  std::shared_ptr<EVP_PKEY> key(EVP_EC_gen("P-256"), EVP_PKEY_free);
  require(key != nullptr, "EVP_EC_gen");
  std::shared_ptr<X509> cert(X509_new(), X509_free);
  require(cert != nullptr, "X509_new");
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial++);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), options.not_before_offset);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), options.not_after_offset);
  require(X509_set_pubkey(cert.get(), key.get()) == 1, "X509_set_pubkey");
  X509_NAME *name = X509_get_subject_name(cert.get());
  require(X509_NAME_add_entry_by_txt(
              name,
              "CN",
              MBSTRING_UTF8,
              reinterpret_cast<const unsigned char *>(common_name.c_str()),
              -1,
              -1,
              0) == 1,
          "X509_NAME_add_entry_by_txt");
  require(X509_set_issuer_name(cert.get(), name) == 1, "X509_set_issuer_name");
  add_extension(cert.get(), NID_basic_constraints, "critical,CA:TRUE");
  add_extension(
      cert.get(), NID_subject_alt_name, options.subject_alt_name.c_str());
  require(X509_sign(cert.get(), key.get(), EVP_sha256()) > 0, "X509_sign");

  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  require(PEM_write_bio_X509(bio.get(), cert.get()) == 1, "PEM_write_bio_X509");
  char *data = nullptr;
  const long length = BIO_get_mem_data(bio.get(), &data);

  unsigned char *der = nullptr;
  const int der_length = i2d_X509(cert.get(), &der);
  require(der_length > 0, "i2d_X509");
  std::vector<unsigned char> der_bytes(der, der + der_length);
  OPENSSL_free(der);
  return TestCertificate{cert,
                         key,
                         std::string(data, static_cast<std::size_t>(length)),
                         std::move(der_bytes)};
}

TestServer::TestServer() : m_server(std::make_unique<httplib::Server>()) {
  record();
}

TestServer::TestServer(const TestCertificate &identity)
    : m_server(std::make_unique<httplib::SSLServer>(identity.cert.get(),
                                                    identity.key.get())),
      m_tls(true) {
  auto &tls_server = static_cast<httplib::SSLServer &>(*m_server);
  SSL_CTX *context = tls_server.ssl_context();
  SSL_CTX_set_app_data(context, &m_handshakes);
  SSL_CTX_set_info_callback(context, [](const SSL *ssl, int where, int) {
    if ((where & SSL_CB_HANDSHAKE_START) != 0) {
      auto *count = static_cast<std::atomic<int> *>(
          SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
      ++*count;
    }
  });
  record();
}

TestServer::~TestServer() {
  m_stopping = true;
  m_server->stop();
  if (m_thread.joinable()) {
    m_thread.join();
  }
}

void TestServer::start() {
  m_port = m_server->bind_to_any_port("127.0.0.1");
  if (m_port <= 0) {
    throw std::runtime_error("cannot bind a test server on 127.0.0.1");
  }
  m_thread = std::thread([this] { m_server->listen_after_bind(); });
  while (!m_server->is_running()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

std::string TestServer::url(const std::string &path) const {
  return std::string(m_tls ? "https" : "http") +
         "://127.0.0.1:" + std::to_string(m_port) + path;
}

cert_poll::Origin TestServer::origin() const {
  return cert_poll::Origin::from_url(url("/")).value();
}

std::vector<SeenRequest> TestServer::seen() const {
  const std::lock_guard lock(m_mutex);
  return m_seen;
}

void TestServer::sleep_unless_stopping(
    std::chrono::milliseconds duration) const {
  const auto end = std::chrono::steady_clock::now() + duration;
  while (!m_stopping && std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

void TestServer::record() {
  m_server->set_pre_routing_handler(
      [this](const httplib::Request &request, httplib::Response &) {
        const std::lock_guard lock(m_mutex);
        m_seen.push_back(SeenRequest{request.path,
                                     request.get_header_value("Authorization"),
                                     request.get_header_value("Accept"),
                                     request.get_header_value("User-Agent"),
                                     request.remote_port});
        return httplib::Server::HandlerResponse::Unhandled;
      });
}

} // namespace test_support
