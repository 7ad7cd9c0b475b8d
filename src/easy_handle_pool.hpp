// SPDX-License-Identifier: Apache-2.0
#pragma once

// Private to src/: the libcurl easy handles of one HttpClient, so that
// get() calls on several threads run their transfers in parallel.

#include <array>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <curl/curl.h>

namespace cert_poll::detail {

// Runs curl_global_init once for the process and returns its result.
CURLcode init_curl_once();

// A libcurl easy handle with the buffers that a transfer on it writes.
// The handle keeps its connection cache between transfers, so a
// keep-alive connection is reused by the next transfer on the same handle.
struct EasyHandle {
  EasyHandle() = default;
  ~EasyHandle();
  EasyHandle(const EasyHandle &) = delete;
  EasyHandle &operator=(const EasyHandle &) = delete;

  CURL *curl = nullptr;
  std::array<char, CURL_ERROR_SIZE> error_buffer{};
  std::string retry_after; // of the last response, empty when it had none
};

// Easy handles that are idle, and a CURLSH share through which every handle
// of the pool uses one DNS cache.
//
// The connection cache is not shared, because libcurl documents sharing
// connections between concurrent threads as unsupported (CURLSHOPT_SHARE(3)).
// TLS sessions are not shared either. NOTE: with libcurl 7.88 and OpenSSL
// 3.0, ThreadSanitizer reports a data race on a shared SSL_SESSION, which
// libcurl gives to concurrent handshakes as one object that OpenSSL changes.
// Each handle still keeps its own connections and TLS sessions.
class EasyHandlePool {
public:
  // An easy handle taken from the pool, put back when the lease ends.
  class Lease {
  public:
    Lease(EasyHandlePool &pool, std::unique_ptr<EasyHandle> handle)
        : m_pool(&pool), m_handle(std::move(handle)) {}
    ~Lease();
    Lease(const Lease &) = delete;
    Lease &operator=(const Lease &) = delete;

    // nullptr when libcurl could not create a handle.
    EasyHandle *get() const { return m_handle.get(); }

  private:
    EasyHandlePool *m_pool;
    std::unique_ptr<EasyHandle> m_handle;
  };

  EasyHandlePool();
  // Every lease must have ended before the pool is destroyed.
  ~EasyHandlePool();
  EasyHandlePool(const EasyHandlePool &) = delete;
  EasyHandlePool &operator=(const EasyHandlePool &) = delete;

  // Takes the idle handle that was put back last, or creates a new one
  // attached to the share when none is idle. Thread-safe.
  Lease take();

  // The share, nullptr when libcurl could not create it.
  CURLSH *share() const { return m_share; }

private:
  static void lock_share(CURL *handle,
                         curl_lock_data data,
                         curl_lock_access access,
                         void *user_data);
  static void unlock_share(CURL *handle, curl_lock_data data, void *user_data);
  void give_back(std::unique_ptr<EasyHandle> handle);

  // One mutex for each kind of shared data, as CURLSHOPT_LOCKFUNC(3)
  // requires.
  std::array<std::mutex, CURL_LOCK_DATA_LAST> m_share_locks;
  CURLSH *m_share = nullptr;
  std::mutex m_mutex; // guards m_idle
  std::vector<std::unique_ptr<EasyHandle>> m_idle;
};

} // namespace cert_poll::detail
