// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "cert_poll/error.hpp"
#include "cert_poll/store.hpp"
#include "cert_poll/x509.hpp"

#include <string>
#include <string_view>
#include <vector>

namespace cert_poll {

// The checks an issued certificate passes before its order becomes valid, and
// the columns derived from it.
struct CheckedCertificate {
  IssuedCertificate certificate;
  // Reasons a derived column stays empty, e.g. renewal_info for a chain that
  // holds only the leaf. Meant for warning lines.
  std::vector<std::string> warnings;
};

// Checks that `chain_pem` parses, that `cert_raw` (when not empty) is the
// chain's first certificate, and that the leaf's public key is the public key
// of `csr`; then derives cert_raw (when empty), the dates, serial, aki and
// renewal_info. Fails with ErrorKind::check and a message that says what did
// not match. With `issuers`, the chain's CA certificates are parsed once per
// cache.
Result<CheckedCertificate>
check_issued_certificate(std::string_view chain_pem,
                         std::string_view cert_raw,
                         std::string_view csr,
                         x509::CertificateCache *issuers = nullptr);

} // namespace cert_poll
