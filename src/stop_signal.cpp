// SPDX-License-Identifier: Apache-2.0
#include "cert_poll/stop_signal.hpp"

#include <csignal>

namespace cert_poll {

namespace {

// Set by the SIGINT and SIGTERM handlers, and read by the poll pass and by
// libcurl's progress callback. Lock-free atomics are safe in a handler.
std::atomic<bool> g_stop_requested{false};
std::atomic<int> g_stop_signal{0};
static_assert(std::atomic<bool>::is_always_lock_free);
static_assert(std::atomic<int>::is_always_lock_free);

} // namespace

extern "C" void request_stop(int signal_number) {
  g_stop_signal.store(signal_number);
  g_stop_requested.store(true);
}

// Installs request_stop for SIGINT and SIGTERM. A signal that the parent
// left ignored stays ignored, as for a background job of a shell without
// job control, which must not stop on the terminal's Ctrl-C. SA_RESTART
// resumes the reads and writes of SQLite and of the log after the handler.
// The poll() that libcurl waits in fails with EINTR anyway, because poll()
// is never restarted, so an HTTP transfer reads the flag at once.
void install_stop_handlers() {
  struct sigaction action {};
  action.sa_handler = &request_stop;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  for (const int signal_number : {SIGINT, SIGTERM}) {
    struct sigaction inherited {};
    sigaction(signal_number, nullptr, &inherited);
    if (inherited.sa_handler != SIG_IGN) {
      sigaction(signal_number, &action, nullptr);
    }
  }
}

const std::atomic<bool> &stop_requested() {
  return g_stop_requested;
}

int stop_signal() {
  return g_stop_signal.load();
}

} // namespace cert_poll
