// SPDX-License-Identifier: Apache-2.0
// RunLock against other processes: util-linux flock(1) and forked children
// that hold the lock or are killed while holding it.

#include "cert_poll/run_lock.hpp"

#include <csignal>
#include <filesystem>
#include <grp.h>
#include <string>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "support/test_support.hpp"

namespace {

namespace fs = std::filesystem;
using cert_poll::ErrorKind;
using cert_poll::RunLock;
using test_support::run_command;
using test_support::shell_quote;

// Returns the exit status of `flock -n FILE true`: 0 when the lock was free,
// 1 when another process holds it.
int flock_tool_status(const fs::path &lock_file) {
  return run_command("flock -n " + shell_quote(lock_file.string()) + " true")
      .exit_status;
}

// A child process that takes the lock on a file with RunLock and holds it
// until it is killed.
class LockHolder {
public:
  explicit LockHolder(const fs::path &lock_file) {
    int fds[2];
    if (::pipe(fds) != 0) {
      return;
    }
    m_pid = ::fork();
    if (m_pid == 0) {
      ::close(fds[0]);
      hold_in_child(lock_file, fds[1]);
    }
    ::close(fds[1]);
    char status = '0';
    m_holds = m_pid > 0 && ::read(fds[0], &status, 1) == 1 && status == '1';
    ::close(fds[0]);
  }

  ~LockHolder() { kill_hard(); }
  LockHolder(const LockHolder &) = delete;
  LockHolder &operator=(const LockHolder &) = delete;

  bool holds() const { return m_holds; }

  // Sends SIGKILL, so that no destructor or exit handler runs in the child,
  // and waits for it to end.
  void kill_hard() {
    if (m_pid > 0) {
      ::kill(m_pid, SIGKILL);
      ::waitpid(m_pid, nullptr, 0);
      m_pid = -1;
    }
  }

private:
  [[noreturn]] static void hold_in_child(const fs::path &lock_file,
                                         int status_fd) {
    auto lock = RunLock::try_acquire(lock_file);
    bool took_lock = lock.has_value() && lock->has_value();
    char status = took_lock ? '1' : '0';
    ssize_t written = ::write(status_fd, &status, 1);
    if (!took_lock || written != 1) {
      ::_exit(1);
    }
    for (;;) {
      ::pause();
    }
  }

  pid_t m_pid = -1;
  bool m_holds = false;
};

// Calls RunLock::try_acquire in a child process and returns "<kind>: <error
// message>", or "" when the call did not fail. The child runs as user nobody
// (65534) when the test runs as root, because root may write any folder.
std::string acquire_error_as_user(const fs::path &lock_file) {
  int fds[2];
  if (::pipe(fds) != 0) {
    return "pipe failed";
  }

  pid_t pid = ::fork();
  if (pid < 0) {
    return "fork failed";
  }
  if (pid == 0) {
    ::close(fds[0]);
    std::string message;
    if (::geteuid() == 0 && (::setgroups(0, nullptr) != 0 ||
                             ::setresgid(65534, 65534, 65534) != 0 ||
                             ::setresuid(65534, 65534, 65534) != 0)) {
      message = "dropping root privileges failed";
    }

    if (message.empty()) {
      auto lock = RunLock::try_acquire(lock_file);
      if (!lock) {
        message = std::string(cert_poll::to_string(lock.error().kind)) + ": " +
                  lock.error().message;
      }
    }
    ssize_t written = ::write(fds[1], message.data(), message.size());
    ::_exit(written == static_cast<ssize_t>(message.size()) ? 0 : 1);
  }

  ::close(fds[1]);
  std::string message;
  char buffer[512];
  ssize_t size = 0;
  while ((size = ::read(fds[0], buffer, sizeof buffer)) > 0) {
    message.append(buffer, static_cast<std::size_t>(size));
  }
  ::close(fds[0]);
  ::waitpid(pid, nullptr, 0);
  return message;
}

TEST(RunLock, AcquireWritesPid) {
  test_support::TempDir dir;
  fs::path lock_file = dir / "acme_srv.db.lock";

  auto lock = RunLock::try_acquire(lock_file);

  ASSERT_TRUE(lock.has_value()) << lock.error().message;
  ASSERT_TRUE(lock->has_value());
  EXPECT_EQ((*lock)->path(), lock_file);
  EXPECT_EQ(test_support::read_file(lock_file),
            std::to_string(::getpid()) + "\n");
}

TEST(RunLock, HeldLockBlocksFlockTool) {
  test_support::TempDir dir;
  fs::path lock_file = dir / "acme_srv.db.lock";

  auto lock = RunLock::try_acquire(lock_file);

  ASSERT_TRUE(lock.has_value()) << lock.error().message;
  ASSERT_TRUE(lock->has_value());
  EXPECT_EQ(flock_tool_status(lock_file), 1);
}

TEST(RunLock, LockHeldByChildGivesNullopt) {
  test_support::TempDir dir;
  fs::path lock_file = dir / "acme_srv.db.lock";
  LockHolder holder(lock_file);
  ASSERT_TRUE(holder.holds());

  auto lock = RunLock::try_acquire(lock_file);

  ASSERT_TRUE(lock.has_value()) << lock.error().message;
  EXPECT_FALSE(lock->has_value());
}

TEST(RunLock, ReleasedLockCanBeTakenAgain) {
  test_support::TempDir dir;
  fs::path lock_file = dir / "acme_srv.db.lock";
  {
    auto first = RunLock::try_acquire(lock_file);
    ASSERT_TRUE(first.has_value()) << first.error().message;
    ASSERT_TRUE(first->has_value());
  }

  EXPECT_TRUE(fs::exists(lock_file)) << "the lock file must stay";
  EXPECT_EQ(flock_tool_status(lock_file), 0);
  auto second = RunLock::try_acquire(lock_file);
  ASSERT_TRUE(second.has_value()) << second.error().message;
  EXPECT_TRUE(second->has_value());
}

TEST(RunLock, MovedLockStaysHeld) {
  test_support::TempDir dir;
  fs::path lock_file = dir / "acme_srv.db.lock";
  auto acquired = RunLock::try_acquire(lock_file);
  ASSERT_TRUE(acquired.has_value()) << acquired.error().message;
  ASSERT_TRUE(acquired->has_value());

  RunLock moved = std::move(**acquired);
  acquired->reset();

  EXPECT_EQ(flock_tool_status(lock_file), 1);
}

TEST(RunLock, KilledHolderLeavesNoStaleLock) {
  test_support::TempDir dir;
  fs::path lock_file = dir / "acme_srv.db.lock";
  LockHolder holder(lock_file);
  ASSERT_TRUE(holder.holds());
  ASSERT_EQ(flock_tool_status(lock_file), 1);

  holder.kill_hard();

  EXPECT_TRUE(fs::exists(lock_file));
  auto lock = RunLock::try_acquire(lock_file);
  ASSERT_TRUE(lock.has_value()) << lock.error().message;
  EXPECT_TRUE(lock->has_value());
  EXPECT_EQ(test_support::read_file(lock_file),
            std::to_string(::getpid()) + "\n");
}

TEST(RunLock, MissingFolderNamesPathAndOption) {
  test_support::TempDir dir;
  fs::path lock_file = dir / "no-such-folder" / "acme_srv.db.lock";

  auto lock = RunLock::try_acquire(lock_file);

  ASSERT_FALSE(lock.has_value());
  EXPECT_EQ(lock.error().kind, ErrorKind::usage);
  EXPECT_NE(lock.error().message.find("'" + lock_file.string() + "'"),
            std::string::npos)
      << lock.error().message;
  EXPECT_NE(lock.error().message.find("--lock-file PATH"), std::string::npos)
      << lock.error().message;
}

TEST(RunLock, UnwritableFolderNamesPath) {
  test_support::TempDir dir;
  fs::path folder = dir / "read-only";
  fs::create_directory(folder);
  fs::permissions(dir.path(),
                  fs::perms::owner_all | fs::perms::group_read |
                      fs::perms::group_exec | fs::perms::others_read |
                      fs::perms::others_exec);
  fs::permissions(folder,
                  fs::perms::owner_read | fs::perms::owner_exec |
                      fs::perms::group_read | fs::perms::group_exec |
                      fs::perms::others_read | fs::perms::others_exec);
  fs::path lock_file = folder / "acme_srv.db.lock";

  std::string message = acquire_error_as_user(lock_file);

  EXPECT_EQ(message.rfind("usage: ", 0), 0u) << message;
  EXPECT_NE(message.find("'" + lock_file.string() + "'"), std::string::npos)
      << message;
  EXPECT_NE(message.find("Permission denied"), std::string::npos) << message;
  EXPECT_NE(message.find("--lock-file PATH"), std::string::npos) << message;
  EXPECT_FALSE(fs::exists(lock_file));
}

TEST(RunLock, FolderAsLockFileFails) {
  test_support::TempDir dir;

  auto lock = RunLock::try_acquire(dir.path());

  ASSERT_FALSE(lock.has_value());
  EXPECT_EQ(lock.error().kind, ErrorKind::usage);
  EXPECT_NE(lock.error().message.find(dir.path().string()), std::string::npos)
      << lock.error().message;
}

TEST(RunLock, OtherContentIsLeftUnchanged) {
  test_support::TempDir dir;
  fs::path database = dir / "acme_srv.db";
  std::string content = std::string("SQLite format 3") + '\0' + "rows";
  test_support::write_file(database, content);

  auto lock = RunLock::try_acquire(database);

  ASSERT_FALSE(lock.has_value());
  EXPECT_EQ(lock.error().kind, ErrorKind::usage);
  EXPECT_NE(lock.error().message.find("other than a PID"), std::string::npos)
      << lock.error().message;
  EXPECT_EQ(test_support::read_file(database), content);
}

TEST(RunLock, OldPidIsReplaced) {
  test_support::TempDir dir;
  fs::path lock_file = dir / "acme_srv.db.lock";
  test_support::write_file(lock_file, "4194304\n");

  auto lock = RunLock::try_acquire(lock_file);

  ASSERT_TRUE(lock.has_value()) << lock.error().message;
  ASSERT_TRUE(lock->has_value());
  EXPECT_EQ(test_support::read_file(lock_file),
            std::to_string(::getpid()) + "\n");
}

TEST(RunLock, SymbolicLinkIsRejected) {
  test_support::TempDir dir;
  fs::path target = dir / "target";
  test_support::write_file(target, "");
  fs::path link = dir / "acme_srv.db.lock";
  fs::create_symlink(target, link);

  auto lock = RunLock::try_acquire(link);

  ASSERT_FALSE(lock.has_value());
  EXPECT_NE(lock.error().message.find("symbolic link"), std::string::npos)
      << lock.error().message;
  EXPECT_EQ(test_support::read_file(target), "");
}

TEST(RunLock, DefaultLockFileAppendsSuffix) {
  EXPECT_EQ(cert_poll::default_lock_file("/var/acme_srv/acme_srv.db"),
            fs::path("/var/acme_srv/acme_srv.db.lock"));
  EXPECT_EQ(cert_poll::default_lock_file("acme_srv.db"),
            fs::path("acme_srv.db.lock"));
}

} // namespace
