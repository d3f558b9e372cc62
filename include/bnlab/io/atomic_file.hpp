// Atomic writes: a temporary file in the same folder, synced, then renamed
// over the target, so an interrupted write never destroys the previous file.
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

// Writes the chunks, in order, to "<path>.tmp.<pid>", syncs it and renames it
// over path. On failure removes the temporary file and throws Error(io) naming
// path.
void write_chunks_atomic(const std::string& path, const std::vector<ByteChunk>& chunks);

// The same atomic write for any bytes (reports, JSON, CSV).
void write_file_atomic(const std::string& path, const std::string& contents);

}  // namespace bnlab::io
