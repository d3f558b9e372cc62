// Progress lines for long work (training epochs, lab runs).
//
// On a terminal (stderr is a tty) one line is redrawn in place with \r:
//   "epoch 3/10 [#########.....] 62% 1203 img/s loss 0.412 ETA 4s"
// at most every kRedrawInterval so that drawing never costs measurable time.
// Elsewhere (a pipe, a log file, CI) a plain line is printed at most every
// kPlainInterval and once at the end, so logs stay short.
#include "bnlab/train/progress.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

namespace bnlab {
namespace {

using Clock = std::chrono::steady_clock;

constexpr auto kRedrawInterval = std::chrono::milliseconds(100);
constexpr auto kPlainInterval = std::chrono::seconds(5);
constexpr int kBarWidth = 20;

double seconds_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

// "4s", "2m05s", "1h02m": short enough for one line.
std::string format_duration(double seconds) {
  char text[32];
  const long whole = static_cast<long>(seconds + 0.5);
  if (whole < 60) {
    std::snprintf(text, sizeof text, "%lds", whole);
  } else if (whole < 3600) {
    std::snprintf(text, sizeof text, "%ldm%02lds", whole / 60, whole % 60);
  } else {
    std::snprintf(text, sizeof text, "%ldh%02ldm", whole / 3600, (whole % 3600) / 60);
  }
  return text;
}

// "[#########.....] 62%": the filled share of the bar is done / total.
std::string format_bar(int64_t done, int64_t total) {
  const double fraction = total > 0 ? std::clamp(double(done) / double(total), 0.0, 1.0) : 1.0;
  const int filled = static_cast<int>(fraction * kBarWidth + 0.5);
  std::string bar = "[" + std::string(filled, '#') + std::string(kBarWidth - filled, '.') + "] ";
  bar += std::to_string(static_cast<int>(fraction * 100.0)) + "%";
  return bar;
}

std::string format_rate(double items, double seconds, const std::string& unit) {
  char text[48];
  const double rate = seconds > 0 ? items / seconds : 0.0;
  std::snprintf(text, sizeof text, "%.0f %s/s", rate, unit.c_str());
  return text;
}

}  // namespace

std::string loss_text(double loss) {
  if (std::isnan(loss)) return "nan";
  if (std::isinf(loss)) return loss > 0 ? "inf" : "-inf";
  char text[32];
  std::snprintf(text, sizeof text, std::fabs(loss) < 1e5 ? "%.4f" : "%.4g", loss);
  return text;
}

Progress::Progress(std::string label, int64_t total, std::string unit)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      total_(total),
      start_(Clock::now()),
      last_print_(start_) {}

// Asked once per process: update() runs every training step.
bool Progress::is_terminal() {
  static const bool terminal = ::isatty(STDERR_FILENO) == 1;
  return terminal;
}

void Progress::update(int64_t done, int64_t items, const std::string& status) {
  const Clock::time_point now = Clock::now();
  const bool terminal = is_terminal();
  if (now - last_print_ < (terminal ? Clock::duration(kRedrawInterval)
                                    : Clock::duration(kPlainInterval)))
    return;
  last_print_ = now;
  const double elapsed = seconds_between(start_, now);
  // Time left assumes the remaining units go at the average pace so far.
  const double left = done > 0 ? elapsed * double(total_ - done) / double(done) : 0.0;
  std::string line = label_ + " " + format_bar(done, total_) + " " +
                     format_rate(double(items), elapsed, unit_);
  if (!status.empty()) line += " " + status;
  line += " ETA " + format_duration(left);
  if (terminal) {
    // \033[K clears what a longer previous line left to the right.
    std::fprintf(stderr, "\r%s\033[K", line.c_str());
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  std::fflush(stderr);
}

void Progress::finish(const std::string& status, int64_t done) {
  const double elapsed = seconds_between(start_, Clock::now());
  // The rate is not known here (finish has no item count); the label, the full
  // bar, the status and the time taken say what happened.
  std::string line = label_ + " " + format_bar(done < 0 ? total_ : done, total_);
  if (!status.empty()) line += " " + status;
  line += " " + format_duration(elapsed);
  if (is_terminal()) {
    std::fprintf(stderr, "\r%s\033[K\n", line.c_str());
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  std::fflush(stderr);
}

}  // namespace bnlab
