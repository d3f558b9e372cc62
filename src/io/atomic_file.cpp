// Atomic file writes: a temporary file in the same folder, fsync, rename.
#include "bnlab/io/atomic_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "bnlab/error.hpp"

namespace bnlab::io {
namespace {

std::string parent_folder(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
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

}  // namespace

/* Crash safety: the bytes go to "<path>.tmp.<pid>" (same folder, so the same
   file system and rename is atomic), are fsync'ed, and only then renamed over
   path; the folder is fsync'ed so the rename itself survives a power cut.
   At every moment path holds either the old file or the complete new one. */
void write_chunks_atomic(const std::string& path, const std::vector<ByteChunk>& chunks) {
  if (path.empty()) throw Error(ErrorCode::io, "cannot write a file with an empty path");
  const std::string tmp_path = path + ".tmp." + std::to_string(::getpid());
  const auto fail = [&](const std::string& step, int error_number) {
    ::unlink(tmp_path.c_str());
    return Error(ErrorCode::io, "cannot write " + path + " (" + step + " " + tmp_path +
                                    "): " + std::strerror(error_number));
  };

  const int fd = ::open(tmp_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    const int error_number = errno;
    throw Error(ErrorCode::io, "cannot write " + path + " (creating " + tmp_path +
                                   "): " + std::strerror(error_number));
  }
  for (const ByteChunk& chunk : chunks) {
    if (!write_all(fd, chunk.data, chunk.size)) {
      const int error_number = errno;
      ::close(fd);
      throw fail("writing", error_number);
    }
  }
  if (::fsync(fd) != 0) {
    const int error_number = errno;
    ::close(fd);
    throw fail("syncing", error_number);
  }
  if (::close(fd) != 0) throw fail("closing", errno);
  if (::rename(tmp_path.c_str(), path.c_str()) != 0) throw fail("renaming", errno);

  // Best effort: a folder that cannot be opened or synced leaves the file
  // written; only the rename's durability across a power cut is at stake.
  const int folder_fd = ::open(parent_folder(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (folder_fd >= 0) {
    ::fsync(folder_fd);
    ::close(folder_fd);
  }
}

void write_file_atomic(const std::string& path, const std::string& contents) {
  write_chunks_atomic(
      path, {ByteChunk{reinterpret_cast<const uint8_t*>(contents.data()), contents.size()}});
}

}  // namespace bnlab::io
