// Atomic file writes: an unnamed temporary file in the same folder, fsync,
// then a short name and a rename over the target.
#include "bnlab/io/atomic_file.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "bnlab/error.hpp"
#include "bnlab/io/regular_file.hpp"

namespace bnlab::io {
namespace {

// Temporary names are ".bnlab-<pid>-<n>.tmp": short whatever the target's
// name (a 252-character name plus a suffix would pass NAME_MAX), and tied to
// the process, so that a later write can tell a dead process's leftover.
constexpr const char* kTempPrefix = ".bnlab-";
constexpr const char* kTempSuffix = ".tmp";
std::atomic<unsigned> g_temp_counter{0};

std::string parent_folder(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string next_temp_name(const std::string& folder) {
  return folder + "/" + kTempPrefix + std::to_string(::getpid()) + "-" +
         std::to_string(g_temp_counter.fetch_add(1)) + kTempSuffix;
}

// The pid in a temporary name of ours, or -1 for any other name.
long temp_name_pid(const char* name) {
  const size_t prefix = std::strlen(kTempPrefix), suffix = std::strlen(kTempSuffix);
  const size_t length = std::strlen(name);
  if (length <= prefix + suffix || std::strncmp(name, kTempPrefix, prefix) != 0 ||
      std::strcmp(name + length - suffix, kTempSuffix) != 0)
    return -1;
  char* end = nullptr;
  const long pid = std::strtol(name + prefix, &end, 10);
  if (end == name + prefix || *end != '-' || pid <= 0) return -1;
  for (const char* p = end + 1; p < name + length - suffix; ++p)
    if (*p < '0' || *p > '9') return -1;
  return pid;
}

// Removes the temporaries that processes killed between naming and renaming
// left in folder (those of processes still running are theirs to finish).
void remove_stale_temporaries(const std::string& folder) {
  DIR* dir = ::opendir(folder.c_str());
  if (dir == nullptr) return;  // the write itself reports the folder's problem
  while (const dirent* entry = ::readdir(dir)) {
    const long pid = temp_name_pid(entry->d_name);
    if (pid <= 0 || pid == ::getpid()) continue;
    if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH)
      ::unlinkat(::dirfd(dir), entry->d_name, 0);
  }
  ::closedir(dir);
}

// Writes all of [data, data + size) to fd, resuming after short writes and
// signals. Returns false with errno set on failure.
bool write_all(int fd, const uint8_t* data, size_t size) {
  while (size > 0) {
    const ssize_t written = ::write(fd, data, size);
    if (written < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data += written;
    size -= static_cast<size_t>(written);
  }
  return true;
}

// While alive, this thread's writes past a file-size limit (ulimit -f) fail
// with EFBIG instead of killing the process with SIGXFSZ; the signal they
// raise is taken back before the thread's mask is restored.
class FileSizeSignalBlocked {
 public:
  FileSizeSignalBlocked() {
    sigemptyset(&signal_);
    sigaddset(&signal_, SIGXFSZ);
    ::pthread_sigmask(SIG_BLOCK, &signal_, &previous_);
  }
  ~FileSizeSignalBlocked() {
    sigset_t pending;
    if (!sigismember(&previous_, SIGXFSZ) && ::sigpending(&pending) == 0 &&
        sigismember(&pending, SIGXFSZ)) {
      const timespec no_wait{};
      ::sigtimedwait(&signal_, nullptr, &no_wait);
    }
    ::pthread_sigmask(SIG_SETMASK, &previous_, nullptr);
  }
  FileSizeSignalBlocked(const FileSizeSignalBlocked&) = delete;
  FileSizeSignalBlocked& operator=(const FileSizeSignalBlocked&) = delete;

 private:
  sigset_t signal_{}, previous_{};
};

// The temporary file: unnamed (O_TMPFILE) where the file system allows it, so
// that a process killed while writing leaves nothing behind; else named.
struct TempFile {
  int fd = -1;
  std::string name;  // empty while unnamed
};

TempFile create_temporary(const std::string& folder) {
  TempFile tmp;
#ifdef O_TMPFILE
  // Naming an unnamed file later goes through /proc/self/fd.
  if (::access("/proc/self/fd", X_OK) == 0) {
    tmp.fd = ::open(folder.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
    if (tmp.fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)) return tmp;
  }
#endif
  for (int attempt = 0; attempt < 100; ++attempt) {
    tmp.name = next_temp_name(folder);
    tmp.fd = ::open(tmp.name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (tmp.fd >= 0 || errno != EEXIST) break;
  }
  if (tmp.fd < 0) tmp.name.clear();
  return tmp;
}

// Gives the unnamed file a temporary name in folder (rename needs a name).
bool name_temporary(TempFile& tmp, const std::string& folder) {
  if (!tmp.name.empty()) return true;
  const std::string fd_path = "/proc/self/fd/" + std::to_string(tmp.fd);
  for (int attempt = 0; attempt < 100; ++attempt) {
    const std::string name = next_temp_name(folder);
    if (::linkat(AT_FDCWD, fd_path.c_str(), AT_FDCWD, name.c_str(), AT_SYMLINK_FOLLOW) == 0) {
      tmp.name = name;
      return true;
    }
    if (errno != EEXIST) return false;
  }
  return false;
}

}  // namespace

/* Crash safety: the bytes go to an unnamed file in the target's folder (same
   file system, so rename is atomic), are fsync'ed, then get a short temporary
   name and are renamed over path; the folder is fsync'ed so the rename itself
   survives a power cut. At every moment path holds either the old file or the
   complete new one, and a kill -9 leaves at most a temporary named between
   two system calls, which the next write in that folder removes. A target
   that exists and is not a regular file (a device, a FIFO, a folder) is
   refused before anything is written: rename would replace it. */
void write_chunks_atomic(const std::string& path, const std::vector<ByteChunk>& chunks) {
  if (path.empty()) throw Error(ErrorCode::io, "cannot write a file with an empty path");
  struct stat target {};
  if (::stat(path.c_str(), &target) == 0 && !S_ISREG(target.st_mode))
    throw Error(ErrorCode::io, "cannot write " + path + ": it is " + file_kind(target.st_mode) +
                                   "; outputs go only to regular files or new paths");
  const std::string folder = parent_folder(path);
  remove_stale_temporaries(folder);

  TempFile tmp = create_temporary(folder);
  if (tmp.fd < 0) {
    const int error_number = errno;
    throw Error(ErrorCode::io, "cannot write " + path + " (creating a temporary file in " +
                                   folder + "): " + std::strerror(error_number));
  }
  // Closes (an unnamed file then vanishes), removes a named one, and names the step.
  const auto fail = [&](const std::string& step, int error_number) {
    if (tmp.fd >= 0) ::close(tmp.fd);
    if (!tmp.name.empty()) ::unlink(tmp.name.c_str());
    return Error(ErrorCode::io, "cannot write " + path + " (" + step + "): " +
                                    std::strerror(error_number));
  };
  {
    const FileSizeSignalBlocked no_sigxfsz;
    for (const ByteChunk& chunk : chunks)
      if (!write_all(tmp.fd, chunk.data, chunk.size)) throw fail("writing", errno);
  }
  if (::fsync(tmp.fd) != 0) throw fail("syncing", errno);
  if (!name_temporary(tmp, folder)) throw fail("naming the temporary file", errno);
  const int fd = tmp.fd;
  tmp.fd = -1;
  if (::close(fd) != 0) throw fail("closing", errno);
  if (::rename(tmp.name.c_str(), path.c_str()) != 0) throw fail("renaming", errno);

  // Best effort: a folder that cannot be opened or synced leaves the file
  // written; only the rename's durability across a power cut is at stake.
  const int folder_fd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (folder_fd >= 0) {
    ::fsync(folder_fd);
    ::close(folder_fd);
  }
}

namespace {

// "--save PATH" or "PATH" for messages.
std::string named(const std::string& path, const std::string& option) {
  return option.empty() ? path : option + " " + path;
}

// Creates and removes a temporary file in folder; throws naming `what`.
void probe_folder(const std::string& folder, const std::string& what) {
  struct stat st {};
  if (::stat(folder.c_str(), &st) != 0) {
    const int error_number = errno;
    throw Error(ErrorCode::io, "cannot write " + what + ": folder " + folder + ": " +
                                   std::strerror(error_number));
  }
  if (!S_ISDIR(st.st_mode))
    throw Error(ErrorCode::io, "cannot write " + what + ": " + folder + " is " +
                                   file_kind(st.st_mode) + ", not a folder");
  TempFile tmp = create_temporary(folder);
  if (tmp.fd < 0) {
    const int error_number = errno;
    throw Error(ErrorCode::io, "cannot write " + what + ": cannot create a file in " + folder +
                                   ": " + std::strerror(error_number));
  }
  ::close(tmp.fd);
  if (!tmp.name.empty()) ::unlink(tmp.name.c_str());
}

}  // namespace

void check_writable(const std::string& path, const std::string& option) {
  if (path.empty()) throw Error(ErrorCode::io, "cannot write " + named("''", option) + ": empty path");
  struct stat target {};
  if (::stat(path.c_str(), &target) == 0 && !S_ISREG(target.st_mode))
    throw Error(ErrorCode::io, "cannot write " + named(path, option) + ": it is " +
                                   file_kind(target.st_mode) +
                                   "; outputs go only to regular files or new paths");
  probe_folder(parent_folder(path), named(path, option));
}

void check_writable_folder(const std::string& dir, const std::string& option) {
  if (dir.empty()) throw Error(ErrorCode::io, "cannot write into " + named("''", option));
  // The nearest existing folder at or above dir: mkdir -p will make the rest there.
  std::string existing = dir;
  struct stat st {};
  while (::stat(existing.c_str(), &st) != 0 && errno == ENOENT) {
    const std::string parent = parent_folder(existing);
    if (parent == existing) break;
    existing = parent;
    while (existing.size() > 1 && existing.back() == '/') existing.pop_back();
  }
  probe_folder(existing, "into " + named(dir, option));
}

void write_file_atomic(const std::string& path, const std::string& contents) {
  write_chunks_atomic(
      path, {ByteChunk{reinterpret_cast<const uint8_t*>(contents.data()), contents.size()}});
}

}  // namespace bnlab::io
