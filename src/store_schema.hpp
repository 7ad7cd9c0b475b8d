// SPDX-License-Identifier: Apache-2.0
#pragma once

// Schema detection for the store: which of acme2certifier's table sets a
// database has, their columns and the ids of the statuses the store uses.

#include "cert_poll/error.hpp"
#include "cert_poll/store.hpp"

#include "sqlite_util.hpp"

namespace cert_poll::detail {

// Finds the first known table set in the database, reads its columns and
// looks up the ids of the processing, valid and invalid statuses. A missing
// table, column or status is an ErrorKind::database error that names the
// file.
Result<Schema> detect_schema(const Database &database);

} // namespace cert_poll::detail
