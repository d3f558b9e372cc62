// Inputs and outputs are regular files: a FIFO would block in open(), and a
// device or folder given as a file is a mistake to report, not to write over.
#pragma once

#include <sys/types.h>

#include <string>

namespace bnlab::io {

// What a st_mode is, for messages: "a regular file", "a directory", "a FIFO",
// "a character device", "a block device", "a socket", "a symbolic link".
const char* file_kind(mode_t mode);

// Opens path read-only and returns the descriptor (close-on-exec, blocking).
// Refuses at once, without blocking, anything that is not a regular file:
// throws Error(io) "PATH: cannot open: REASON" or "PATH: is a FIFO, not a
// regular file".
int open_regular_file(const std::string& path);

}  // namespace bnlab::io
