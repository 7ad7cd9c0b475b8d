// SPDX-License-Identifier: Apache-2.0
#pragma once

// SIGINT and SIGTERM as a stop request: the handlers only set a flag, which
// the poll pass checks between requests and libcurl between packets.

#include <atomic>

namespace cert_poll {

// Installs the handlers for SIGINT and SIGTERM.
void install_stop_handlers();

// The flag the handlers set; PassOptions::stop_requested points here.
const std::atomic<bool> &stop_requested();

// The number of the signal that requested the stop, 0 when none did.
int stop_signal();

} // namespace cert_poll
