// The golden files' one format (tests/golden/make_*_goldens.py): lines
// "key count v0 v1 ...", '#' comments, read into key -> numbers.
#pragma once

#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace bnlab::test {

inline std::map<std::string, std::vector<double>> read_golden_lines(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open golden file " + path);
  std::map<std::string, std::vector<double>> golden;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    std::string key;
    size_t count = 0;
    if (!(fields >> key >> count)) throw std::runtime_error("bad line in " + path + ": " + line);
    std::vector<double>& values = golden[key];
    values.resize(count);
    for (double& v : values)
      if (!(fields >> v)) throw std::runtime_error("short entry '" + key + "' in " + path);
  }
  return golden;
}

}  // namespace bnlab::test
