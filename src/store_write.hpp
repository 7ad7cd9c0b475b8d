// SPDX-License-Identifier: Apache-2.0
#pragma once

// The statements that store one Update, run by the store inside its write
// transaction.

#include "cert_poll/error.hpp"
#include "cert_poll/store.hpp"

#include "sqlite_util.hpp"

namespace cert_poll::detail {

// Writes the certificate row of `update` and, for issued or rejected, its
// order status. Run it inside an open transaction. Fails with
// ErrorKind::conflict when the order is no longer `processing` or the row is
// gone; a statement may already have run then, so the caller rolls back.
Result<void> write_rows(const Database &database,
                        const Schema &schema,
                        const Update &update);

} // namespace cert_poll::detail
