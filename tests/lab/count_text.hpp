// How often `what` occurs in `text` (overlapping matches counted): the lab
// tests count charts, tags and markers in generated SVG and HTML.
#pragma once

#include <string>

inline int count_text(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t pos = text.find(what); pos != std::string::npos; pos = text.find(what, pos + 1)) ++n;
  return n;
}
