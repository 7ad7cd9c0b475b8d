// SPDX-License-Identifier: Apache-2.0
#pragma once

// The threads of a poll pass: each takes a pending request from a bounded
// queue, runs the pass's work on it (the CA call and the certificate
// checks) and hands the result back to the thread that writes the database.

#include "cert_poll/pending_request.hpp"

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <sys/resource.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace cert_poll::detail {

// The nice value of the jobs' threads, above the default of 0.
constexpr int k_job_niceness = 5;

template <typename Output> class WorkerPool {
public:
  using Work = std::function<Output(PendingRequest)>;

  // Starts `jobs` threads that run `work`. At most `capacity` requests are
  // queued or running at once.
  WorkerPool(int jobs, std::size_t capacity, Work work)
      : m_capacity(capacity), m_work(std::move(work)) {
    for (int i = 0; i < jobs; ++i) {
      m_threads.emplace_back([this] { run(); });
    }
  }

  WorkerPool(const WorkerPool &) = delete;
  WorkerPool &operator=(const WorkerPool &) = delete;

  // Lets the running requests finish and joins the threads. Outputs not
  // taken are dropped.
  ~WorkerPool() {
    {
      const std::lock_guard lock(m_mutex);
      m_closing = true;
      m_queue.clear();
    }
    m_work_ready.notify_all();
    for (auto &thread : m_threads) {
      thread.join();
    }
  }

  // True when push() would exceed the capacity.
  bool full() const {
    const std::lock_guard lock(m_mutex);
    return m_outstanding >= m_capacity;
  }

  // The requests pushed whose output has not been taken yet.
  std::size_t outstanding() const {
    const std::lock_guard lock(m_mutex);
    return m_outstanding;
  }

  void push(PendingRequest request) {
    {
      const std::lock_guard lock(m_mutex);
      m_queue.push_back(std::move(request));
      ++m_outstanding;
    }
    m_work_ready.notify_one();
  }

  // Removes the requests that no thread has started and returns them.
  std::vector<PendingRequest> take_queued() {
    const std::lock_guard lock(m_mutex);
    std::vector<PendingRequest> queued(std::make_move_iterator(m_queue.begin()),
                                       std::make_move_iterator(m_queue.end()));
    m_outstanding -= queued.size();
    m_queue.clear();
    return queued;
  }

  // Waits until an output is ready or `until` passes, then returns the
  // outputs ready so far, in the order they finished.
  std::vector<Output>
  take_outputs(std::chrono::steady_clock::time_point until) {
    std::unique_lock lock(m_mutex);
    m_output_ready.wait_until(lock, until, [this] { return !m_done.empty(); });
    std::vector<Output> outputs(std::make_move_iterator(m_done.begin()),
                                std::make_move_iterator(m_done.end()));
    m_done.clear();
    m_outstanding -= outputs.size();
    return outputs;
  }

private:
  void run() {
    // Linux applies nice values per thread. A lower priority for the jobs
    // lets the thread that holds the database's write lock run first when
    // the CPUs are busy, which keeps the transactions short. A failure only
    // leaves the default priority.
    setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), k_job_niceness);
    while (true) {
      PendingRequest request;
      {
        std::unique_lock lock(m_mutex);
        m_work_ready.wait(lock,
                          [this] { return m_closing || !m_queue.empty(); });
        if (m_closing) {
          return;
        }
        request = std::move(m_queue.front());
        m_queue.pop_front();
      }
      Output output = m_work(std::move(request));
      {
        const std::lock_guard lock(m_mutex);
        m_done.push_back(std::move(output));
      }
      m_output_ready.notify_one();
    }
  }

  const std::size_t m_capacity;
  const Work m_work;
  mutable std::mutex m_mutex;
  std::condition_variable m_work_ready;
  std::condition_variable m_output_ready;
  std::deque<PendingRequest> m_queue;
  std::deque<Output> m_done;
  std::size_t m_outstanding = 0; // queued, running or done but not taken
  bool m_closing = false;
  std::vector<std::thread> m_threads;
};

} // namespace cert_poll::detail
