// SPDX-License-Identifier: Apache-2.0
#include "cert_poll/error.hpp"

namespace cert_poll {

std::string_view to_string(ErrorKind kind) {
  switch (kind) {
  case ErrorKind::usage:
    return "usage";
  case ErrorKind::config:
    return "config";
  case ErrorKind::database:
    return "database";
  case ErrorKind::busy:
    return "busy";
  case ErrorKind::conflict:
    return "conflict";
  case ErrorKind::timeout:
    return "timeout";
  case ErrorKind::transport:
    return "transport";
  case ErrorKind::tls:
    return "tls";
  case ErrorKind::http_status:
    return "http_status";
  case ErrorKind::parse:
    return "parse";
  case ErrorKind::protocol:
    return "protocol";
  case ErrorKind::origin:
    return "origin";
  case ErrorKind::check:
    return "check";
  }
  return "unknown";
}

} // namespace cert_poll
