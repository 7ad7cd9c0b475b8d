// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <expected>
#include <string>
#include <string_view>

namespace cert_poll {

// The class of a failure, so that callers can tell a timeout from a bad
// response from a broken database without parsing the message.
enum class ErrorKind {
  usage,       // a command-line value is invalid
  config,      // acme_srv.cfg is missing, unreadable or has an invalid value
  database,    // SQLite failed, or the database is not an acme2certifier one
  busy,        // the database stayed locked past the busy timeout
  conflict,    // the order changed under us, so nothing was written
  timeout,     // a network operation timed out
  transport,   // connection refused, reset, DNS failure, body too large
  tls,         // certificate verification or handshake failed
  http_status, // the server responded with a status other than 2xx
  parse,       // a response or stored value is not valid JSON, base64 or DER
  protocol,    // a response is valid JSON but lacks or misuses a field
  origin,      // a URL points away from the configured api_host
  check,       // an issued certificate failed a check before storing
};

// A failure with a message meant for the administrator. The message names
// the value that caused it and, where there is one, the fix.
struct Error {
  ErrorKind kind;
  std::string message;
  long http_status = 0; // set when kind == ErrorKind::http_status
};

template <typename T> using Result = std::expected<T, Error>;

inline std::unexpected<Error> make_error(ErrorKind kind, std::string message) {
  return std::unexpected(Error{kind, std::move(message)});
}

std::string_view to_string(ErrorKind kind);

} // namespace cert_poll
