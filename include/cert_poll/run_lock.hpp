// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "cert_poll/error.hpp"

#include <filesystem>
#include <optional>

namespace cert_poll {

// An advisory flock(2) lock on a lock file, so that only one cert_poll run
// at a time polls for and writes to a database. The lock is held while the
// object lives and released when it is destroyed. The kernel also releases
// it when the process dies, even from SIGKILL, so a killed run leaves no
// stale lock behind. The file itself stays: see the destructor.
class RunLock {
public:
  // Opens or creates `lock_file` with mode 0644 and tries to take an
  // exclusive lock on it without waiting. Returns nullopt when another open
  // file description, usually another cert_poll process, holds the lock.
  // After taking the lock, it replaces the file's content with this
  // process's PID and a newline, for people who look. Nothing reads the PID
  // back.
  //
  // Fails with ErrorKind::usage, with a message that names the path and
  // --lock-file, when the file cannot be opened or created, is a symbolic
  // link, or cannot be locked (for example ENOLCK). It also fails when the
  // file is not a regular file or contains anything other than a PID, so
  // that a mistyped path never truncates a database.
  static Result<std::optional<RunLock>>
  try_acquire(const std::filesystem::path &lock_file);

  // Closes the file descriptor, which releases the lock.
  ~RunLock();
  RunLock(RunLock &&other) noexcept;
  RunLock &operator=(RunLock &&other) noexcept;
  RunLock(const RunLock &) = delete;
  RunLock &operator=(const RunLock &) = delete;

  const std::filesystem::path &path() const { return m_path; }

private:
  RunLock(int fd, std::filesystem::path path);

  int m_fd = -1;
  std::filesystem::path m_path;
};

// Returns the default lock file for `db_file`: the same path with ".lock"
// appended, so acme_srv.db gets acme_srv.db.lock in the same folder.
std::filesystem::path default_lock_file(const std::filesystem::path &db_file);

} // namespace cert_poll
