// SPDX-License-Identifier: Apache-2.0
#include "synthetic_db.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <exception>
#include <fstream>
#include <iterator>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <spdlog/fmt/fmt.h>
#include <sqlite3.h>

namespace bench {

namespace {

template <auto Free> struct OpensslFree {
  template <class T> void operator()(T *pointer) const { Free(pointer); }
};
using KeyPtr = std::unique_ptr<EVP_PKEY, OpensslFree<EVP_PKEY_free>>;
using CsrPtr = std::unique_ptr<X509_REQ, OpensslFree<X509_REQ_free>>;
using ExtensionPtr =
    std::unique_ptr<X509_EXTENSION, OpensslFree<X509_EXTENSION_free>>;

void check_openssl(bool success, const char *call) {
  if (success) {
    return;
  }
  std::array<char, 256> reason{};
  ERR_error_string_n(ERR_get_error(), reason.data(), reason.size());
  ERR_clear_error();
  throw std::runtime_error(fmt::format("OpenSSL call '{}' failed while "
                                       "generating benchmark CSRs: {}",
                                       call,
                                       reason.data()));
}

// Sets the CSR's SubjectPublicKeyInfo from the key's uncompressed point.
// X509_REQ_set_pubkey() gives the same DER, but OpenSSL 3.0 runs an
// encoder lookup for it that took about 170 us per fresh key on the machine
// in docs/BENCHMARK.md, 6 times as long as signing the CSR.
void set_public_key(X509_REQ *request, EVP_PKEY *key) {
  unsigned char *point = nullptr;
  std::size_t size = EVP_PKEY_get1_encoded_public_key(key, &point);
  check_openssl(size > 0, "EVP_PKEY_get1_encoded_public_key");
  // X509_PUBKEY_set0_param takes ownership of `point` only when it succeeds.
  if (X509_PUBKEY_set0_param(X509_REQ_get_X509_PUBKEY(request),
                             OBJ_nid2obj(NID_X9_62_id_ecPublicKey),
                             V_ASN1_OBJECT,
                             OBJ_nid2obj(NID_X9_62_prime256v1),
                             point,
                             static_cast<int>(size)) != 1) {
    OPENSSL_free(point);
    check_openssl(false, "X509_PUBKEY_set0_param");
  }
}

} // namespace

std::vector<unsigned char> make_csr_der(const std::string &dns_name) {
  KeyPtr key(EVP_EC_gen("P-256"));
  check_openssl(key != nullptr, "EVP_EC_gen");
  CsrPtr request(X509_REQ_new());
  check_openssl(request != nullptr, "X509_REQ_new");
  check_openssl(X509_REQ_set_version(request.get(), 0) == 1,
                "X509_REQ_set_version");
  check_openssl(X509_NAME_add_entry_by_txt(
                    X509_REQ_get_subject_name(request.get()),
                    "CN",
                    MBSTRING_UTF8,
                    reinterpret_cast<const unsigned char *>(dns_name.c_str()),
                    -1,
                    -1,
                    0) == 1,
                "X509_NAME_add_entry_by_txt");

  std::string san = "DNS:" + dns_name;
  ExtensionPtr extension(
      X509V3_EXT_conf_nid(nullptr, nullptr, NID_subject_alt_name, san.c_str()));
  check_openssl(extension != nullptr, "X509V3_EXT_conf_nid");
  STACK_OF(X509_EXTENSION) *extensions = sk_X509_EXTENSION_new_null();
  check_openssl(extensions != nullptr, "sk_X509_EXTENSION_new_null");
  sk_X509_EXTENSION_push(extensions, extension.get());
  int added = X509_REQ_add_extensions(request.get(), extensions);
  // The stack only borrows the extension, which `extension` still owns.
  sk_X509_EXTENSION_free(extensions);
  check_openssl(added == 1, "X509_REQ_add_extensions");

  set_public_key(request.get(), key.get());
  check_openssl(X509_REQ_sign(request.get(), key.get(), EVP_sha256()) > 0,
                "X509_REQ_sign");
  int size = i2d_X509_REQ(request.get(), nullptr);
  check_openssl(size > 0, "i2d_X509_REQ");
  std::vector<unsigned char> der(static_cast<std::size_t>(size));
  unsigned char *cursor = der.data();
  check_openssl(i2d_X509_REQ(request.get(), &cursor) == size, "i2d_X509_REQ");
  return der;
}

namespace {

// acme2certifier stores the CSR as the ACME client sends it, base64url
// without padding, as tools/make_example_db.py writes it too.
std::string encode_base64url(const std::vector<unsigned char> &bytes) {
  std::string text(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  int length = EVP_EncodeBlock(reinterpret_cast<unsigned char *>(text.data()),
                               bytes.data(),
                               static_cast<int>(bytes.size()));
  text.resize(static_cast<std::size_t>(length));
  while (!text.empty() && text.back() == '=') {
    text.pop_back();
  }
  std::replace(text.begin(), text.end(), '+', '-');
  std::replace(text.begin(), text.end(), '/', '_');
  return text;
}

SyntheticOrder make_order(demo_ca::DemoCa &ca, std::size_t index) {
  SyntheticOrder order;
  std::string number = fmt::format("{:06}", index);
  order.order_name = "BenchOrd" + number;
  order.certificate_name = "BenchCrt" + number;
  order.dns_name = "host" + number + ".bench.example";
  std::vector<unsigned char> der = make_csr_der(order.dns_name);
  order.csr_base64url = encode_base64url(der);
  order.poll_identifier =
      ca.add_request("bench-" + number, der, behaviour_for_index(index));
  return order;
}

class Database {
public:
  Database(const std::filesystem::path &path, int flags) {
    int code = sqlite3_open_v2(path.c_str(), &m_db, flags, nullptr);
    if (code != SQLITE_OK) {
      std::string message =
          m_db != nullptr ? sqlite3_errmsg(m_db) : sqlite3_errstr(code);
      sqlite3_close(m_db);
      throw std::runtime_error("failed to open '" + path.string() +
                               "': " + message);
    }
  }
  ~Database() { sqlite3_close(m_db); }
  Database(const Database &) = delete;
  Database &operator=(const Database &) = delete;

  sqlite3 *get() const { return m_db; }

  void execute(const std::string &sql) const {
    char *message = nullptr;
    if (sqlite3_exec(m_db, sql.c_str(), nullptr, nullptr, &message) !=
        SQLITE_OK) {
      std::string text = message != nullptr ? message : "unknown error";
      sqlite3_free(message);
      throw std::runtime_error("SQL failed in the benchmark database: " + text);
    }
  }

  void check(int code, const char *call) const {
    if (code != SQLITE_OK && code != SQLITE_DONE && code != SQLITE_ROW) {
      throw std::runtime_error(fmt::format("SQLite {} failed in the benchmark "
                                           "database: {}",
                                           call,
                                           sqlite3_errmsg(m_db)));
    }
  }

private:
  sqlite3 *m_db = nullptr;
};

class Statement {
public:
  Statement(const Database &db, const char *sql) : m_db(db) {
    db.check(sqlite3_prepare_v2(db.get(), sql, -1, &m_statement, nullptr),
             "prepare");
  }
  ~Statement() { sqlite3_finalize(m_statement); }
  Statement(const Statement &) = delete;
  Statement &operator=(const Statement &) = delete;

  void bind(int index, const std::string &text) {
    m_db.check(sqlite3_bind_text(
                   m_statement, index, text.c_str(), -1, SQLITE_TRANSIENT),
               "bind");
  }
  void bind(int index, std::int64_t value) {
    m_db.check(sqlite3_bind_int64(m_statement, index, value), "bind");
  }
  bool step() {
    int code = sqlite3_step(m_statement);
    m_db.check(code, "step");
    return code == SQLITE_ROW;
  }
  void reset() {
    m_db.check(sqlite3_reset(m_statement), "reset");
    m_db.check(sqlite3_clear_bindings(m_statement), "clear bindings");
  }
  std::int64_t integer(int column) const {
    return sqlite3_column_int64(m_statement, column);
  }

private:
  const Database &m_db;
  sqlite3_stmt *m_statement = nullptr;
};

std::string read_text_file(const std::filesystem::path &path) {
  std::ifstream stream(path, std::ios::binary);
  if (!stream) {
    throw std::runtime_error("failed to read '" + path.string() + "'");
  }
  return {std::istreambuf_iterator<char>(stream),
          std::istreambuf_iterator<char>()};
}

} // namespace

demo_ca::Behaviour behaviour_for_index(std::size_t index) {
  std::size_t slot = index % 10;
  if (slot < 5) {
    return demo_ca::Behaviour::approve;
  }
  if (slot < 9) {
    return demo_ca::Behaviour::pending;
  }
  return demo_ca::Behaviour::reject;
}

OutcomeCounts expected_outcomes(std::size_t order_count) {
  OutcomeCounts counts;
  for (std::size_t index = 0; index < order_count; ++index) {
    switch (behaviour_for_index(index)) {
    case demo_ca::Behaviour::approve:
      ++counts.approved;
      break;
    case demo_ca::Behaviour::reject:
      ++counts.rejected;
      break;
    default:
      ++counts.pending;
      break;
    }
  }
  return counts;
}

std::vector<SyntheticOrder>
make_orders(demo_ca::DemoCa &ca, std::size_t order_count, unsigned threads) {
  std::vector<SyntheticOrder> orders(order_count);
  std::atomic<std::size_t> next_index{0};
  std::mutex error_mutex;
  std::exception_ptr first_error;
  auto work = [&] {
    try {
      for (std::size_t index = next_index++; index < order_count;
           index = next_index++) {
        orders[index] = make_order(ca, index);
      }
    } catch (...) {
      std::lock_guard lock(error_mutex);
      if (!first_error) {
        first_error = std::current_exception();
      }
      next_index = order_count;
    }
  };
  std::vector<std::thread> workers;
  for (unsigned i = 0; i < std::max(threads, 1U); ++i) {
    workers.emplace_back(work);
  }
  for (std::thread &worker : workers) {
    worker.join();
  }
  if (first_error) {
    std::rethrow_exception(first_error);
  }
  return orders;
}

void write_database(const std::filesystem::path &path,
                    const std::filesystem::path &schema_file,
                    const std::vector<SyntheticOrder> &orders) {
  if (std::filesystem::exists(path)) {
    throw std::runtime_error("benchmark database '" + path.string() +
                             "' already exists; remove it first");
  }
  Database db(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  db.execute(read_text_file(schema_file));
  db.execute("INSERT INTO account (name, alg, jwk, contact) VALUES "
             "('BenchAccount', 'ES256', '{\"kty\": \"EC\", \"crv\": "
             "\"P-256\", \"x\": \"bench-x\", \"y\": \"bench-y\"}', "
             "'[\"mailto:pki@bench.example\"]')");

  db.execute("BEGIN");
  Statement order_insert(
      db,
      "INSERT INTO orders (name, identifiers, account_id, status_id, "
      "expires) VALUES (?, ?, 1, (SELECT id FROM status WHERE name = "
      "'processing'), 1900000000)");
  Statement certificate_insert(
      db,
      "INSERT INTO certificate (name, order_id, csr, poll_identifier, error) "
      "VALUES (?, ?, ?, ?, 'Unknown request status: pending')");
  for (const SyntheticOrder &order : orders) {
    order_insert.bind(1, order.order_name);
    order_insert.bind(
        2, R"([{"type": "dns", "value": ")" + order.dns_name + R"("}])");
    order_insert.step();
    order_insert.reset();

    certificate_insert.bind(1, order.certificate_name);
    certificate_insert.bind(2, sqlite3_last_insert_rowid(db.get()));
    certificate_insert.bind(3, order.csr_base64url);
    certificate_insert.bind(4, order.poll_identifier);
    certificate_insert.step();
    certificate_insert.reset();
  }
  db.execute("COMMIT");
}

std::size_t count_processing_orders(const std::filesystem::path &path) {
  Database db(path, SQLITE_OPEN_READONLY);
  Statement count(db,
                  "SELECT count(*) FROM orders o JOIN status s ON s.id = "
                  "o.status_id WHERE s.name = 'processing'");
  count.step();
  return static_cast<std::size_t>(count.integer(0));
}

} // namespace bench
