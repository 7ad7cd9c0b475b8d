// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "cert_poll/config.hpp"
#include "cert_poll/error.hpp"
#include "cert_poll/pending_request.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace cert_poll {

enum class PollStatus {
  issued,   // chain_pem is set
  pending,  // the CA still waits for a decision
  rejected, // the CA operator rejected the request
  failed,   // the CA could not be reached or sent an unusable response
};

// What a CA handler returns for one request: acme2certifier's five poll
// values, with the status kept apart from the error text.
struct PollResult {
  PollStatus status = PollStatus::failed;
  std::string message;   // the error or reason; empty when issued or pending
  std::string chain_pem; // issued: PEM chain, leaf first
  std::string cert_raw;  // issued: base64 DER of the leaf, may be empty
  // The poll identifier to store: nullopt keeps the one we polled with.
  std::optional<std::string> poll_identifier;
};

// Asks one CA about pending requests.
//
// A pass may call poll() on the same handler from several threads at once,
// so an implementation must be safe for that. set_deadline() and
// set_stop_flag() are called before a pass starts, not while polls run.
class CaHandler {
public:
  virtual ~CaHandler() = default;
  virtual std::string_view name() const = 0;
  // Thread-safe: may run concurrently with other poll() calls.
  virtual PollResult poll(const PendingRequest &request) = 0;

  // Makes each later poll() end by `deadline` (nullopt: no limit), so that
  // a poll that reaches it fails. The default ignores it, so a handler
  // without the override may run past the deadline.
  virtual void set_deadline(
      std::optional<std::chrono::steady_clock::time_point> /*deadline*/) {}

  // Makes poll() fail soon once `*stop_requested` is true, so that a
  // signal need not wait for the CA's response. nullptr removes the flag.
  // The default ignores it.
  virtual void set_stop_flag(const std::atomic<bool> * /*stop_requested*/) {}

  // The number of HTTP requests sent to the CA so far by this handler.
  // The default, for a handler that does not count them, returns 0.
  virtual std::uint64_t requests_sent() const { return 0; }
};

// The names --handler accepts.
std::span<const std::string_view> supported_handlers();

// Picks the handler name: --handler, else the file name of [CAhandler]
// handler_file (certifier_ca_handler.py selects "certifier"). A handler we do
// not implement fails with ErrorKind::usage naming the supported ones.
Result<std::string> select_handler(const Config &config);

// Builds the selected handler from its configuration section.
Result<std::unique_ptr<CaHandler>>
make_ca_handler(const Config &config, const EnvironmentLookup &environment);

} // namespace cert_poll
