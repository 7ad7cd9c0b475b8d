// SPDX-License-Identifier: Apache-2.0
#include "easy_handle_pool.hpp"

#include <utility>

#include <spdlog/spdlog.h>

namespace cert_poll::detail {

// curl_global_init is not thread-safe in every libcurl build, so it runs
// once for the process and its result is kept for later calls.
CURLcode init_curl_once() {
  static std::once_flag flag;
  static CURLcode result = CURLE_OK;
  std::call_once(flag, [] { result = curl_global_init(CURL_GLOBAL_DEFAULT); });
  return result;
}

EasyHandle::~EasyHandle() {
  curl_easy_cleanup(curl);
}

EasyHandlePool::Lease::~Lease() {
  if (m_handle) {
    m_pool->give_back(std::move(m_handle));
  }
}

EasyHandlePool::EasyHandlePool() {
  if (init_curl_once() != CURLE_OK) {
    return;
  }
  m_share = curl_share_init();
  if (m_share == nullptr) {
    spdlog::debug("curl_share_init failed, so each HTTP transfer handle "
                  "keeps its own DNS cache");
    return;
  }
  CURLSHcode code = curl_share_setopt(m_share, CURLSHOPT_LOCKFUNC, &lock_share);
  if (code == CURLSHE_OK) {
    code = curl_share_setopt(m_share, CURLSHOPT_UNLOCKFUNC, &unlock_share);
  }
  if (code == CURLSHE_OK) {
    code = curl_share_setopt(m_share, CURLSHOPT_USERDATA, this);
  }
  if (code != CURLSHE_OK) {
    // Without the lock callbacks, threads must not use the share at all.
    spdlog::debug("cannot set the lock callbacks of a libcurl share: {}",
                  curl_share_strerror(code));
    curl_share_cleanup(m_share);
    m_share = nullptr;
    return;
  }
  code = curl_share_setopt(m_share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
  if (code != CURLSHE_OK) {
    spdlog::debug("libcurl share does not share DNS answers: {}",
                  curl_share_strerror(code));
  }
}

EasyHandlePool::~EasyHandlePool() {
  // The handles detach from the share when they are cleaned up, and
  // curl_share_cleanup fails while a handle still uses the share.
  m_idle.clear();
  if (m_share != nullptr) {
    curl_share_cleanup(m_share);
  }
}

EasyHandlePool::Lease EasyHandlePool::take() {
  {
    const std::lock_guard lock(m_mutex);
    if (!m_idle.empty()) {
      std::unique_ptr<EasyHandle> handle = std::move(m_idle.back());
      m_idle.pop_back();
      return Lease(*this, std::move(handle));
    }
  }

  // Created outside the lock, so that other threads can take idle handles
  // meanwhile.
  if (init_curl_once() != CURLE_OK) {
    return Lease(*this, nullptr);
  }
  auto handle = std::make_unique<EasyHandle>();
  handle->curl = curl_easy_init();
  if (handle->curl == nullptr) {
    return Lease(*this, nullptr);
  }
  if (m_share != nullptr) {
    curl_easy_setopt(handle->curl, CURLOPT_SHARE, m_share);
  }
  return Lease(*this, std::move(handle));
}

void EasyHandlePool::give_back(std::unique_ptr<EasyHandle> handle) {
  const std::lock_guard lock(m_mutex);
  m_idle.push_back(std::move(handle));
}

void EasyHandlePool::lock_share(CURL * /*handle*/,
                                curl_lock_data data,
                                curl_lock_access /*access*/,
                                void *user_data) {
  auto *pool = static_cast<EasyHandlePool *>(user_data);
  const auto index = static_cast<std::size_t>(data);
  if (index < pool->m_share_locks.size()) {
    pool->m_share_locks[index].lock();
  }
}

void EasyHandlePool::unlock_share(CURL * /*handle*/,
                                  curl_lock_data data,
                                  void *user_data) {
  auto *pool = static_cast<EasyHandlePool *>(user_data);
  const auto index = static_cast<std::size_t>(data);
  if (index < pool->m_share_locks.size()) {
    pool->m_share_locks[index].unlock();
  }
}

} // namespace cert_poll::detail
