// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <string>

namespace cert_poll {

// One certificate row whose order is `processing`, as read from the database.
struct PendingRequest {
  std::int64_t certificate_id = 0;
  std::string certificate_name;
  std::int64_t order_id = 0;
  std::string order_name;
  std::string csr;             // base64 DER as stored (standard or URL-safe)
  std::string poll_identifier; // empty only in processing_requests()
  std::string error;           // the last stored error, empty when NULL
  std::string identifiers;     // orders.identifiers JSON text, may be empty
  std::string created_at;      // certificate.created_at as stored
};

} // namespace cert_poll
