// A private scratch folder for the fuzz targets whose readers take a path:
// on /dev/shm when there is one (no disk writes), removed at exit.
#pragma once

#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>

namespace bnlab::fuzz {

inline const std::string& scratch_dir() {
  // Never destroyed: the exit handler that removes the folder runs after
  // static destructors registered later would have run.
  static const std::string* const dir = [] {
    auto* pattern = new std::string(
        std::string(access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp") + "/bnlab_fuzz_XXXXXX");
    if (mkdtemp(pattern->data()) == nullptr) std::abort();
    std::atexit([] { std::filesystem::remove_all(*dir); });
    return pattern;
  }();
  return *dir;
}

// Writes bytes to scratch_dir()/name and returns the path.
inline std::string write_scratch(const std::string& name, const uint8_t* data, size_t size) {
  const std::string path = scratch_dir() + "/" + name;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) std::abort();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  return path;
}

}  // namespace bnlab::fuzz
