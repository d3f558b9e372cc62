// Running the `bnlab` executable from a test: its exit status, stdout and
// stderr; a scratch folder per test; whether Fashion-MNIST is installed
// (cli_test.cpp, train_cli_test.cpp, cli_manners_test.cpp, tests/dist).
#pragma once

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "bnlab/data/idx.hpp"

namespace bnlab_cli_test {

struct Finished {
  int status = -1;  // exit status; -1 when killed by a signal
  std::string out, err;
  double seconds = 0.0;
  nlohmann::json json() const { return nlohmann::json::parse(last_line()); }
  std::string last_line() const {
    std::string text = out;
    while (!text.empty() && text.back() == '\n') text.pop_back();
    const size_t newline = text.rfind('\n');
    return newline == std::string::npos ? text : text.substr(newline + 1);
  }
};

inline std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// A fresh folder for one test's files.
inline std::string scratch_dir(const std::string& name) {
  const std::string dir = testing::TempDir() + "bnlab_cli_" + name + "_" + std::to_string(getpid());
  ::mkdir(dir.c_str(), 0755);
  return dir;
}

// Runs a shell command line: stdout captured, stderr through a file, timed.
inline Finished run_shell(const std::string& command_line) {
  const std::string err_path = scratch_dir("stderr") + "/stderr.txt";
  const std::string command = "(" + command_line + ") 2>'" + err_path + "'";
  Finished run;
  const auto start = std::chrono::steady_clock::now();
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) return run;
  char buffer[4096];
  size_t got;
  while ((got = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) run.out.append(buffer, got);
  const int status = ::pclose(pipe);
  run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  run.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  run.err = read_text(err_path);
  return run;
}

// Runs `bnlab <args>` through the shell (args are shell words).
inline Finished run_bnlab(const std::string& args) {
  return run_shell("'" BNLAB_EXE "' " + args);
}

inline bool have_data() {
  struct stat st {};
  return ::stat((bnlab::data::default_data_dir() + "/train-images-idx3-ubyte.gz").c_str(), &st) ==
             0 ||
         ::stat((bnlab::data::default_data_dir() + "/train-images-idx3-ubyte").c_str(), &st) == 0;
}

#define REQUIRE_DATA()                                                                       \
  if (!have_data()) GTEST_SKIP() << "Fashion-MNIST is not installed in "                     \
                                 << bnlab::data::default_data_dir()

}  // namespace bnlab_cli_test
