// SPDX-License-Identifier: Apache-2.0
#include "store_write.hpp"

#include <array>
#include <string>
#include <variant>
#include <vector>

namespace cert_poll::detail {

namespace {

// Maps empty text to NULL, so that no row carries an empty serial, aki or
// renewal_info that a lookup could match.
Value text_or_null(const std::string &text) {
  if (text.empty()) {
    return std::monostate{};
  }
  return std::string_view(text);
}

Value text_or_null(const std::optional<std::string> &text) {
  if (!text) {
    return std::monostate{};
  }
  return std::string_view(*text);
}

struct Assignment {
  std::string_view column;
  Value value;
};

std::vector<Assignment> issued_assignments(const Schema &schema,
                                           const IssuedCertificate &issued) {
  // The error is cleared because the request is no longer in error.
  std::vector<Assignment> assignments{
      {"cert", std::string_view(issued.chain_pem)},
      {"cert_raw", std::string_view(issued.cert_raw)},
      {"error", std::monostate{}},
      {"poll_identifier", std::monostate{}},
  };
  std::array<Assignment, 5> derived{{
      {"issue_uts", issued.issue_uts},
      {"expire_uts", issued.expire_uts},
      {"serial", text_or_null(issued.serial)},
      {"aki", text_or_null(issued.aki)},
      {"renewal_info", text_or_null(issued.renewal_info)},
  }};
  for (const auto &assignment : derived) {
    if (schema.has_certificate_column(assignment.column)) {
      assignments.push_back(assignment);
    }
  }
  return assignments;
}

std::vector<Assignment> certificate_assignments(const Schema &schema,
                                                const Update &update) {
  if (update.outcome == Outcome::issued) {
    return issued_assignments(schema, *update.certificate);
  }
  return {
      {"error", text_or_null(update.error)},
      {"poll_identifier", text_or_null(update.poll_identifier)},
  };
}

// Fails with ErrorKind::conflict unless the order exists and is still
// `processing`, because another process (acme2certifier, a second poller or
// an administrator) may have changed it since pending() listed it.
Result<std::string> require_processing(const Database &database,
                                       const Schema &schema,
                                       std::int64_t order_id) {
  auto state =
      read_order_state(database, schema, order_id, "reading the order status");
  if (!state) {
    return std::unexpected(state.error());
  }
  if (!*state) {
    return make_error(ErrorKind::conflict,
                      "order id '" + std::to_string(order_id) +
                          "' not found: nothing written");
  }
  if ((*state)->status_id != schema.processing_id) {
    std::string now = (*state)->status_name.value_or(
        "status id " + std::to_string((*state)->status_id));
    return make_error(ErrorKind::conflict,
                      "order '" + (*state)->name +
                          "' is no longer processing (now '" + now +
                          "'): nothing written");
  }
  return (*state)->name;
}

Result<void> update_certificate(const Database &database,
                                const Schema &schema,
                                const Update &update,
                                const std::string &order_name) {
  std::string action =
      "updating certificate id '" + std::to_string(update.certificate_id) + "'";
  std::string sql =
      "UPDATE " + quote_identifier(schema.certificate_table) + " SET ";
  std::vector<Value> values;
  for (const auto &assignment : certificate_assignments(schema, update)) {
    if (!values.empty()) {
      sql += ", ";
    }
    values.push_back(assignment.value);
    sql += quote_identifier(assignment.column) + " = ?" +
           std::to_string(values.size());
  }
  values.emplace_back(update.certificate_id);
  values.emplace_back(update.order_id);
  sql += " WHERE id = ?" + std::to_string(values.size() - 1) +
         " AND order_id = ?" + std::to_string(values.size());

  auto changed = execute(database, sql, values, action);
  if (!changed) {
    return std::unexpected(changed.error());
  }
  if (*changed != 1) {
    return make_error(
        ErrorKind::conflict,
        "certificate id '" + std::to_string(update.certificate_id) +
            "' of order '" + order_name + "' not found: nothing written");
  }
  return {};
}

Result<void> update_order_status(const Database &database,
                                 const Schema &schema,
                                 const Update &update,
                                 const std::string &order_name) {
  std::int64_t status_id =
      update.outcome == Outcome::issued ? schema.valid_id : schema.invalid_id;
  std::string action = "updating the status of order '" + order_name + "'";
  std::string sql = "UPDATE " + quote_identifier(schema.order_table) +
                    " SET status_id = ?1 WHERE id = ?2 AND status_id = ?3";
  auto changed = execute(database,
                         sql,
                         {status_id, update.order_id, schema.processing_id},
                         action);
  if (!changed) {
    return std::unexpected(changed.error());
  }
  if (*changed != 1) {
    return make_error(ErrorKind::conflict,
                      "order '" + order_name +
                          "' is no longer processing: nothing written");
  }
  return {};
}

} // namespace

Result<std::optional<OrderState>> read_order_state(const Database &database,
                                                   const Schema &schema,
                                                   OrderKey key,
                                                   std::string_view action) {
  const bool by_id = std::holds_alternative<std::int64_t>(key);
  std::string sql = "SELECT o.name, o.status_id, s.name FROM " +
                    quote_identifier(schema.order_table) + " AS o LEFT JOIN " +
                    quote_identifier(schema.status_table) +
                    " AS s ON s.id = o.status_id WHERE " +
                    (by_id ? "o.id" : "o.name") + " = ?1 LIMIT 1";
  Value value = by_id ? Value(std::get<std::int64_t>(key))
                      : Value(std::get<std::string_view>(key));
  auto statement = prepare(database, sql, {value}, action);
  if (!statement) {
    return std::unexpected(statement.error());
  }
  auto row = step(database, statement->get(), action);
  if (!row) {
    return std::unexpected(row.error());
  }
  if (!*row) {
    return std::optional<OrderState>{};
  }
  OrderState state{column_text(statement->get(), 0),
                   sqlite3_column_int64(statement->get(), 1),
                   std::nullopt};
  if (sqlite3_column_type(statement->get(), 2) != SQLITE_NULL) {
    state.status_name = column_text(statement->get(), 2);
  }
  return state;
}

Result<void> write_rows(const Database &database,
                        const Schema &schema,
                        const Update &update) {
  auto order_name = require_processing(database, schema, update.order_id);
  if (!order_name) {
    return std::unexpected(order_name.error());
  }
  auto certificate = update_certificate(database, schema, update, *order_name);
  if (!certificate) {
    return certificate;
  }
  if (update.outcome == Outcome::issued ||
      update.outcome == Outcome::rejected) {
    return update_order_status(database, schema, update, *order_name);
  }
  return {};
}

} // namespace cert_poll::detail
