// SPDX-License-Identifier: Apache-2.0
#include "cert_poll/run_lock.hpp"

#include <cerrno>
#include <fcntl.h>
#include <string>
#include <string_view>
#include <sys/file.h>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>
#include <utility>

#include <spdlog/spdlog.h>

namespace cert_poll {

namespace {

// A PID file contains at most the ten digits of a 32-bit pid_t and a newline.
constexpr off_t k_max_pid_file_size = 11;

std::string in_quotes(const std::filesystem::path &path) {
  return "'" + path.string() + "'";
}

std::string errno_text(int number) {
  return std::generic_category().message(number);
}

// Closes its file descriptor on destruction unless release() was called.
class FileDescriptor {
public:
  explicit FileDescriptor(int fd) : m_fd(fd) {}
  ~FileDescriptor() {
    if (m_fd >= 0) {
      ::close(m_fd);
    }
  }
  FileDescriptor(FileDescriptor &&other) noexcept : m_fd(other.release()) {}
  FileDescriptor(const FileDescriptor &) = delete;
  FileDescriptor &operator=(const FileDescriptor &) = delete;

  int get() const { return m_fd; }
  int release() { return std::exchange(m_fd, -1); }

private:
  int m_fd;
};

Result<FileDescriptor> open_lock_file(const std::filesystem::path &path) {
  // O_NOFOLLOW: in a folder that others may write, such as /tmp, a symbolic
  // link planted at the path would make this process truncate its target.
  int fd = ::open(
      path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW, 0644);
  if (fd >= 0) {
    return FileDescriptor(fd);
  }
  int error = errno;
  if (error == ELOOP) {
    return make_error(ErrorKind::usage,
                      "lock file " + in_quotes(path) +
                          " is a symbolic link, which cert_poll does not "
                          "follow: pass --lock-file PATH with the real path");
  }
  return make_error(ErrorKind::usage,
                    "failed to open lock file " + in_quotes(path) + " (" +
                        errno_text(error) +
                        "): check that the folder exists and that this user "
                        "can write the file, or pass --lock-file PATH to put "
                        "it elsewhere");
}

// Takes the lock without waiting. Returns false when another open file
// description holds it.
Result<bool> lock_exclusive(int fd, const std::filesystem::path &path) {
  while (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int error = errno;
    if (error == EWOULDBLOCK) {
      return false;
    }
    if (error != EINTR) {
      return make_error(ErrorKind::usage,
                        "failed to lock " + in_quotes(path) + " (" +
                            errno_text(error) +
                            "): flock(2) may not work on this file system, "
                            "so pass --lock-file PATH on a local one");
    }
  }
  return true;
}

bool is_pid_text(std::string_view text) {
  if (text.ends_with('\n')) {
    text.remove_suffix(1);
  }
  for (char c : text) {
    if (c < '0' || c > '9') {
      return false;
    }
  }
  return true;
}

// Fails unless the file is a regular file that is empty or contains a PID,
// because write_pid() truncates it.
Result<void> check_overwritable(int fd, const std::filesystem::path &path) {
  struct stat info {};
  if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    return make_error(ErrorKind::usage,
                      "lock file " + in_quotes(path) +
                          " is not a regular file: pass --lock-file PATH "
                          "with a path for a new file");
  }
  std::string content(k_max_pid_file_size + 1, '\0');
  ssize_t size = ::pread(fd, content.data(), content.size(), 0);
  if (size >= 0 && size <= k_max_pid_file_size) {
    content.resize(static_cast<std::size_t>(size));
    if (is_pid_text(content)) {
      return {};
    }
  }
  return make_error(ErrorKind::usage,
                    "lock file " + in_quotes(path) +
                        " contains data other than a PID, so cert_poll leaves "
                        "it unchanged: check the path, or pass --lock-file "
                        "PATH with a path for a new file");
}

// Replaces the content with this process's PID, for people. A failure is
// logged at debug level only, because nothing depends on the PID.
void write_pid(int fd, const std::filesystem::path &path) {
  std::string text = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, text.data(), text.size(), 0) !=
                                     static_cast<ssize_t>(text.size())) {
    spdlog::debug("lock file {}: failed to write the PID ({})",
                  in_quotes(path),
                  errno_text(errno));
  }
}

} // namespace

Result<std::optional<RunLock>>
RunLock::try_acquire(const std::filesystem::path &lock_file) {
  auto fd = open_lock_file(lock_file);
  if (!fd) {
    return std::unexpected(fd.error());
  }
  auto locked = lock_exclusive(fd->get(), lock_file);
  if (!locked) {
    return std::unexpected(locked.error());
  }
  if (!*locked) {
    return std::nullopt;
  }
  auto overwritable = check_overwritable(fd->get(), lock_file);
  if (!overwritable) {
    return std::unexpected(overwritable.error());
  }
  write_pid(fd->get(), lock_file);
  return RunLock(fd->release(), lock_file);
}

RunLock::RunLock(int fd, std::filesystem::path path)
    : m_fd(fd), m_path(std::move(path)) {}

// The file is not removed, only closed. A second run may have opened the
// path already and be about to call flock. If this run unlinked the file,
// that run would lock the unlinked file while a third run created a new
// file at the path and locked that one, and both would run at once.
RunLock::~RunLock() {
  if (m_fd >= 0) {
    ::close(m_fd);
  }
}

RunLock::RunLock(RunLock &&other) noexcept
    : m_fd(std::exchange(other.m_fd, -1)), m_path(std::move(other.m_path)) {}

RunLock &RunLock::operator=(RunLock &&other) noexcept {
  if (this != &other) {
    if (m_fd >= 0) {
      ::close(m_fd);
    }
    m_fd = std::exchange(other.m_fd, -1);
    m_path = std::move(other.m_path);
  }
  return *this;
}

std::filesystem::path default_lock_file(const std::filesystem::path &db_file) {
  std::filesystem::path lock_file = db_file;
  lock_file += ".lock";
  return lock_file;
}

} // namespace cert_poll
