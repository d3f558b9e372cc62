// Atomic writes: a temporary file in the same folder, synced, then renamed
// over the target, so an interrupted write never destroys the previous file.
// Outputs go only to regular files or new paths.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace bnlab::io {

// The write over several buffers, so that a checkpoint is written from its
// tensors' own bytes without first copying them into one.
struct ByteChunk {
  const uint8_t* data;
  size_t size;
};

// Writes the chunks, in order, to a temporary file in path's folder (unnamed
// where the file system allows, else ".bnlab-<pid>-<n>.tmp"), syncs it and
// renames it over path. Throws Error(io) naming path, before writing anything,
// when path exists and is not a regular file (a device, a FIFO, a folder). On
// a failed write (a full disk, a file-size limit: EFBIG, not SIGXFSZ) removes
// the temporary file and throws Error(io) naming path. Removes the
// temporaries that killed processes left in the folder.
void write_chunks_atomic(const std::string& path, const std::vector<ByteChunk>& chunks);

// Checks, before long work, that write_chunks_atomic(path, ...) can succeed:
// path is a regular file or new, its folder exists and a file can be created
// there (tried, then removed). Throws Error(io) naming path (and `option`,
// e.g. "--save", when given) and the reason.
void check_writable(const std::string& path, const std::string& option = "");

// The same for a folder that files will be written into: dir, or where it is
// missing the nearest folder above it (which will hold it), must be a folder
// where files can be created.
void check_writable_folder(const std::string& dir, const std::string& option = "");

// The same atomic write for any bytes (reports, JSON, CSV).
void write_file_atomic(const std::string& path, const std::string& contents);

}  // namespace bnlab::io
