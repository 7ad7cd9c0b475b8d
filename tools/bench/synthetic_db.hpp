// SPDX-License-Identifier: Apache-2.0
#pragma once

// Synthetic acme2certifier databases for the benchmark: N orders in status
// processing, each with one certificate row whose CSR has a fresh EC P-256
// key and whose poll identifier names a request registered in the demo CA.

#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

#include "demo_ca.hpp"

namespace bench {

// The outcome mix by order index: of every 10 orders, 5 are approved, 4 stay
// pending and 1 is rejected.
demo_ca::Behaviour behaviour_for_index(std::size_t index);

struct OutcomeCounts {
  std::size_t approved = 0;
  std::size_t pending = 0;
  std::size_t rejected = 0;
};
OutcomeCounts expected_outcomes(std::size_t order_count);

// One order as the database stores it.
struct SyntheticOrder {
  std::string order_name;
  std::string certificate_name;
  std::string dns_name;
  std::string csr_base64url; // DER, base64url without padding
  std::string poll_identifier;
};

// Creates a CSR for `dns_name` with a new EC P-256 key, as an ACME client
// sends it: subject CN and subjectAltName both the DNS name. Returns its
// DER. Throws std::runtime_error when an OpenSSL call fails.
std::vector<unsigned char> make_csr_der(const std::string &dns_name);

// Generates `order_count` CSRs on `threads` threads and registers each in
// `ca` (which must be started) with behaviour_for_index(). Throws
// std::runtime_error when an OpenSSL call fails, and passes on what
// DemoCa::add_request throws.
std::vector<SyntheticOrder>
make_orders(demo_ca::DemoCa &ca, std::size_t order_count, unsigned threads);

// Creates the database file at `path` from the schema file and inserts one
// account and the orders, all in one transaction. Throws std::runtime_error
// when the file exists or an SQLite call fails.
void write_database(const std::filesystem::path &path,
                    const std::filesystem::path &schema_file,
                    const std::vector<SyntheticOrder> &orders);

// Counts the orders in status processing.
std::size_t count_processing_orders(const std::filesystem::path &path);

} // namespace bench
