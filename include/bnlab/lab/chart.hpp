// Charts as self-contained SVG strings: no dependencies, no scripts, inline
// styles, so a report (or `bnlab demo`) can paste them into HTML or write them
// to a .svg file. Every chart's root is <svg class="chart" ...> with width,
// height, viewBox and a <title>, so a test can count the charts in a page.
//
//   line_chart_svg  curves y(x) per series; NaN/Inf points break the line and
//                   the first one after finite points gets a "diverged" marker
//   band_chart_svg  15/50/85th-percentile lines with the band between filled
//                   (the paper's Figure 1)
//   bar_chart_svg   grouped bars: one group per category, one bar per series
//                   (e.g. "without BN" / "with BN" per learning rate); a NaN
//                   value is drawn as a "diverged" mark instead of a bar
//   heatmap_svg     a grid of cells (rows x columns) shaded by value, each
//                   with its value written in; a NaN cell is marked "diverged"
#pragma once

#include <cstddef>
#include <limits>
#include <string>
#include <vector>

namespace bnlab::lab {

// Colors used when a series gives none: without BN first, with BN second.
inline constexpr const char* kColorWithoutBn = "#d62728";
inline constexpr const char* kColorWithBn = "#1f77b4";
const char* default_color(size_t index);

struct Series {
  std::string name;
  std::vector<double> xs, ys;  // same length; non-finite ys break the line
  std::string color;           // CSS color; empty: default_color(index)
  bool dashed = false;
};

struct ChartSpec {
  std::string title;
  std::string x_label, y_label;
  std::vector<Series> series;
  bool log_y = false;           // ys <= 0 are treated as missing on a log axis
  int width = 560, height = 340;
  // Fixed y range (both finite to take effect); otherwise fitted to the data.
  double y_min = std::numeric_limits<double>::quiet_NaN();
  double y_max = std::numeric_limits<double>::quiet_NaN();
};

std::string line_chart_svg(const ChartSpec& spec);

// One band: xs, and per x the low / middle / high values (e.g. the 15th, 50th
// and 85th percentiles). The band between low and high is filled.
struct BandSpec {
  std::string title;
  std::string x_label, y_label;
  std::vector<double> xs, low, mid, high;
  std::string low_name = "15th percentile", mid_name = "50th percentile",
              high_name = "85th percentile";
  std::string color = kColorWithBn;
  int width = 460, height = 320;
  double y_min = std::numeric_limits<double>::quiet_NaN();
  double y_max = std::numeric_limits<double>::quiet_NaN();
};

std::string band_chart_svg(const BandSpec& spec);

struct BarSeries {
  std::string name;            // "without BN"
  std::vector<double> values;  // one per category; NaN: "diverged"/missing
  std::string color;
};

struct BarChartSpec {
  std::string title;
  std::string x_label, y_label;
  std::vector<std::string> categories;  // "lr 0.01", ...
  std::vector<BarSeries> series;
  int width = 560, height = 340;
  double y_min = std::numeric_limits<double>::quiet_NaN();  // default 0 or the data's min
  double y_max = std::numeric_limits<double>::quiet_NaN();
  std::string missing_label = "diverged";  // written where a value is NaN
  int value_decimals = 2;                  // value printed above each bar; < 0: none
};

std::string bar_chart_svg(const BarChartSpec& spec);

struct HeatmapSpec {
  std::string title;
  std::string x_label, y_label;
  std::vector<std::string> columns;         // left to right ("0.01", ...)
  std::vector<std::string> rows;            // top to bottom ("2", "5", ...)
  std::vector<std::vector<double>> values;  // [row][column]; NaN: missing_label
  // The shading runs from white at value_min to `color` at value_max (clamped).
  double value_min = 0, value_max = 1;
  std::string value_name = "test accuracy";  // the scale's label
  std::string color = kColorWithBn;
  std::string missing_label = "diverged";
  int value_decimals = 2;
  int width = 460, height = 320;
};

std::string heatmap_svg(const HeatmapSpec& spec);

// "Nice" tick values (1, 2, 5 times a power of ten) covering [low, high],
// about `target` of them. low == high gives a small range around the value.
std::vector<double> nice_ticks(double low, double high, int target = 5);

// Decade ticks (and 2, 5 multiples when few decades) for a log axis.
std::vector<double> log_ticks(double low, double high);

// A tick label: shortest of fixed and scientific notation that keeps the value.
std::string format_tick(double value);

// &, <, >, " and ' escaped for XML text and attributes.
std::string escape_xml(const std::string& text);

}  // namespace bnlab::lab
