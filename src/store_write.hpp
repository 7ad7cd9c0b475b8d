// SPDX-License-Identifier: Apache-2.0
#pragma once

// The statements that store one Update, run by the store inside its write
// transaction.

#include "cert_poll/error.hpp"
#include "cert_poll/store.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "sqlite_util.hpp"

namespace cert_poll::detail {

// An order and the name of its status.
struct OrderState {
  std::string name;
  std::int64_t status_id = 0;
  // nullopt when the status table has no row for status_id.
  std::optional<std::string> status_name;
};

// The order that read_order_state() reads: by id or by name.
using OrderKey = std::variant<std::int64_t, std::string_view>;

// Reads the order that `key` names, or nullopt when there is none. `action`
// names the step in an error message.
Result<std::optional<OrderState>> read_order_state(const Database &database,
                                                   const Schema &schema,
                                                   OrderKey key,
                                                   std::string_view action);

// Writes the certificate row of `update` and, for issued or rejected, its
// order status. Run it inside an open transaction. Fails with
// ErrorKind::conflict when the order is no longer `processing` or the row is
// gone. A statement may already have run then, so the caller rolls back.
Result<void> write_rows(const Database &database,
                        const Schema &schema,
                        const Update &update);

} // namespace cert_poll::detail
