// SVG charts as strings (see include/bnlab/lab/chart.hpp). Layout of every
// chart: title on top, legend row under it, the plot frame with y ticks on
// the left and x ticks below, axis labels outside the ticks.
#include "bnlab/lab/chart.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

namespace bnlab::lab {
namespace {

constexpr double kMarginLeft = 64, kMarginRight = 18, kTitleHeight = 24, kLegendRow = 18,
                 kMarginBottom = 46;
constexpr const char* kFont = "font-family:Helvetica,Arial,sans-serif";

std::string num(double v) {  // SVG coordinate
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

// Appends one point of an SVG path, "M x y " or "L x y ", piece by piece (GCC
// 12 warns, -Wrestrict, a false positive, on "L" + std::string).
void add_point(std::string& path, const char* command, const std::string& x, double y) {
  path += command;
  path += x;
  path += ' ';
  path += num(y);
  path += ' ';
}

// The plot frame and the mapping from data to pixels.
struct Frame {
  double left, top, right, bottom;
  double x_low, x_high, y_low, y_high;
  bool log_y = false;
  double px(double x) const {
    return x_high == x_low ? (left + right) / 2
                           : left + (x - x_low) / (x_high - x_low) * (right - left);
  }
  double py(double y) const {
    double t = log_y ? (std::log10(y) - std::log10(y_low)) / (std::log10(y_high) - std::log10(y_low))
                     : (y - y_low) / (y_high - y_low);
    t = std::clamp(t, -0.02, 1.02);  // a fixed range clips what lies outside, just past the frame
    return bottom - t * (bottom - top);
  }
};

// Legend entries laid out left to right, wrapping; returns the rows used.
struct LegendEntry {
  std::string name, color;
  bool dashed = false;
  bool box = false;  // a filled square (bars, bands) rather than a line
};

int legend_rows(const std::vector<LegendEntry>& entries, double width) {
  double x = kMarginLeft;
  int rows = entries.empty() ? 0 : 1;
  for (const auto& e : entries) {
    double w = 30 + 6.5 * static_cast<double>(e.name.size()) + 14;
    if (x + w > width - kMarginRight && x > kMarginLeft) {
      ++rows;
      x = kMarginLeft;
    }
    x += w;
  }
  return rows;
}

void write_legend(std::ostringstream& out, const std::vector<LegendEntry>& entries, double width) {
  double x = kMarginLeft, y = kTitleHeight + 12;
  for (const auto& e : entries) {
    double w = 30 + 6.5 * static_cast<double>(e.name.size()) + 14;
    if (x + w > width - kMarginRight && x > kMarginLeft) {
      x = kMarginLeft;
      y += kLegendRow;
    }
    if (e.box) {
      out << "<rect x=\"" << num(x) << "\" y=\"" << num(y - 5) << "\" width=\"22\" height=\"10\" "
          << "style=\"fill:" << e.color << ";fill-opacity:0.5;stroke:" << e.color << "\"/>";
    } else {
      out << "<line x1=\"" << num(x) << "\" y1=\"" << num(y) << "\" x2=\"" << num(x + 22)
          << "\" y2=\"" << num(y) << "\" style=\"stroke:" << e.color << ";stroke-width:2.5"
          << (e.dashed ? ";stroke-dasharray:6,3" : "") << "\"/>";
    }
    out << "<text x=\"" << num(x + 28) << "\" y=\"" << num(y + 4)
        << "\" style=\"font-size:12px;fill:#222\">" << escape_xml(e.name) << "</text>";
    x += w;
  }
}

void open_svg(std::ostringstream& out, int width, int height, const std::string& title) {
  out << "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" width=\"" << width
      << "\" height=\"" << height << "\" viewBox=\"0 0 " << width << " " << height
      << "\" role=\"img\" style=\"" << kFont << ";background:#fff\">"
      << "<title>" << escape_xml(title) << "</title>"
      << "<text x=\"" << num(width / 2.0) << "\" y=\"17\" style=\"font-size:14px;font-weight:bold;"
      << "fill:#111;text-anchor:middle\">" << escape_xml(title) << "</text>";
}

// Opens a chart: the svg with its title, the legend, and the plot frame below
// them (extra_top: more room above the plot, e.g. for bar values).
Frame open_chart(std::ostringstream& out, int width, int height, const std::string& title,
                 const std::vector<LegendEntry>& legend, double extra_top = 0) {
  open_svg(out, width, height, title);
  write_legend(out, legend, width);
  Frame f;
  f.left = kMarginLeft;
  f.right = width - kMarginRight;
  f.top = kTitleHeight + 8 + legend_rows(legend, width) * kLegendRow + extra_top;
  f.bottom = height - kMarginBottom;
  return f;
}

// Grid lines, tick labels, frame and axis labels. y_ticks already mapped by
// the frame (log or linear); x ticks are numbers unless categories are given.
void write_axes(std::ostringstream& out, const Frame& f, const std::vector<double>& x_ticks,
                const std::vector<double>& y_ticks, const std::string& x_label,
                const std::string& y_label) {
  for (double t : y_ticks) {
    double y = f.py(t);
    out << "<line x1=\"" << num(f.left) << "\" y1=\"" << num(y) << "\" x2=\"" << num(f.right)
        << "\" y2=\"" << num(y) << "\" style=\"stroke:#e4e4e4;stroke-width:1\"/>"
        << "<text x=\"" << num(f.left - 6) << "\" y=\"" << num(y + 4)
        << "\" style=\"font-size:11px;fill:#444;text-anchor:end\">" << format_tick(t) << "</text>";
  }
  for (double t : x_ticks) {
    double x = f.px(t);
    out << "<line x1=\"" << num(x) << "\" y1=\"" << num(f.bottom) << "\" x2=\"" << num(x)
        << "\" y2=\"" << num(f.bottom + 4) << "\" style=\"stroke:#888\"/>"
        << "<text x=\"" << num(x) << "\" y=\"" << num(f.bottom + 16)
        << "\" style=\"font-size:11px;fill:#444;text-anchor:middle\">" << format_tick(t)
        << "</text>";
  }
  out << "<rect x=\"" << num(f.left) << "\" y=\"" << num(f.top) << "\" width=\""
      << num(f.right - f.left) << "\" height=\"" << num(f.bottom - f.top)
      << "\" style=\"fill:none;stroke:#888;stroke-width:1\"/>";
  if (!x_label.empty())
    out << "<text x=\"" << num((f.left + f.right) / 2) << "\" y=\"" << num(f.bottom + 36)
        << "\" style=\"font-size:12px;fill:#222;text-anchor:middle\">" << escape_xml(x_label)
        << "</text>";
  if (!y_label.empty()) {
    double cx = 14, cy = (f.top + f.bottom) / 2;
    out << "<text x=\"" << num(cx) << "\" y=\"" << num(cy) << "\" transform=\"rotate(-90 "
        << num(cx) << " " << num(cy) << ")\" style=\"font-size:12px;fill:#222;text-anchor:middle\">"
        << escape_xml(y_label) << "</text>";
  }
}

void no_data(std::ostringstream& out, const Frame& f) {
  out << "<text x=\"" << num((f.left + f.right) / 2) << "\" y=\"" << num((f.top + f.bottom) / 2)
      << "\" style=\"font-size:13px;fill:#888;text-anchor:middle\">no finite data</text>";
}

// The y range: fixed when both ends are given, else the data's range widened
// to nice ticks. Returns the ticks.
std::vector<double> fit_y(Frame& f, double data_low, double data_high, double fixed_low,
                          double fixed_high, bool log_y) {
  f.log_y = log_y;
  bool fixed = std::isfinite(fixed_low) && std::isfinite(fixed_high) && fixed_high > fixed_low &&
               (!log_y || fixed_low > 0);
  if (log_y) {
    double lo = fixed ? fixed_low : std::pow(10.0, std::floor(std::log10(data_low)));
    double hi = fixed ? fixed_high : std::pow(10.0, std::ceil(std::log10(data_high)));
    if (hi <= lo) hi = lo * 10;
    f.y_low = lo;
    f.y_high = hi;
    return log_ticks(lo, hi);
  }
  if (fixed) {
    f.y_low = fixed_low;
    f.y_high = fixed_high;
    return nice_ticks(fixed_low, fixed_high);
  }
  auto ticks = nice_ticks(data_low, data_high);
  f.y_low = std::min(ticks.front(), data_low);
  f.y_high = std::max(ticks.back(), data_high);
  return ticks;
}

}  // namespace

const char* default_color(size_t index) {
  static const char* const kPalette[] = {kColorWithoutBn, kColorWithBn, "#2ca02c", "#ff7f0e",
                                         "#9467bd",       "#8c564b",    "#e377c2", "#7f7f7f",
                                         "#bcbd22",       "#17becf"};
  return kPalette[index % (sizeof kPalette / sizeof kPalette[0])];
}

std::string escape_xml(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

/* Nice ticks: step = m * 10^e with m in {1, 2, 5}, the smallest such step with
   (high - low) / step <= target; ticks are the multiples of step from
   floor(low/step) to ceil(high/step). */
std::vector<double> nice_ticks(double low, double high, int target) {
  if (!std::isfinite(low) || !std::isfinite(high)) return {0.0, 1.0};
  if (high < low) std::swap(low, high);
  if (high == low) {
    double pad = low == 0 ? 1.0 : std::abs(low) * 0.1;
    low -= pad;
    high += pad;
  }
  target = std::max(target, 2);
  double raw = (high - low) / target;
  double power = std::pow(10.0, std::floor(std::log10(raw)));
  double step = power * 10;
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    if (m * power >= raw) {
      step = m * power;
      break;
    }
  }
  std::vector<double> ticks;
  double first = std::floor(low / step + 1e-9), last = std::ceil(high / step - 1e-9);
  for (double k = first; k <= last + 0.5; k += 1.0) {
    double v = k * step;
    if (std::abs(v) < step * 1e-9) v = 0.0;  // no "-0" or 1e-17 labels
    ticks.push_back(v);
  }
  return ticks;
}

std::vector<double> log_ticks(double low, double high) {
  std::vector<double> ticks;
  if (!(low > 0) || !(high > low)) return {1.0};
  int e0 = static_cast<int>(std::floor(std::log10(low) + 1e-9));
  int e1 = static_cast<int>(std::ceil(std::log10(high) - 1e-9));
  bool fine = e1 - e0 <= 2;
  for (int e = e0; e <= e1; ++e) {
    for (double m : {1.0, 2.0, 5.0}) {
      if (m != 1.0 && !fine) continue;
      double v = m * std::pow(10.0, e);
      if (v >= low * (1 - 1e-9) && v <= high * (1 + 1e-9)) ticks.push_back(v);
    }
  }
  if (ticks.empty()) ticks.push_back(low);
  return ticks;
}

std::string format_tick(double value) {
  if (value == 0) return "0";
  char buf[32];
  for (int precision = 1; precision <= 10; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*g", precision, value);
    if (std::abs(std::strtod(buf, nullptr) - value) <= std::abs(value) * 1e-9) break;
  }
  std::string s = buf;
  // "1e+03" -> "1000" and "1e-05" -> "1e-5": shorter and what people read.
  auto e = s.find('e');
  if (e != std::string::npos) {
    int exponent = std::atoi(s.c_str() + e + 1);
    if (exponent >= 0 && exponent <= 5) {
      std::snprintf(buf, sizeof buf, "%.0f", value);
      return buf;
    }
    return s.substr(0, e + 1) + std::to_string(exponent);
  }
  return s;
}

/* Line chart. Finite points (positive on a log axis) fit the ranges; a
   non-finite y ends the current path ("M" starts the next); the first
   non-finite y after a finite one, or a series with no finite point at all,
   gets an X marker at the top of the frame labelled "diverged". A lone finite
   point between breaks is drawn as a dot. */
std::string line_chart_svg(const ChartSpec& spec) {
  auto usable = [&](double y) { return std::isfinite(y) && (!spec.log_y || y > 0); };
  double x_low = INFINITY, x_high = -INFINITY, y_low = INFINITY, y_high = -INFINITY;
  for (const auto& s : spec.series) {
    size_t n = std::min(s.xs.size(), s.ys.size());
    for (size_t i = 0; i < n; ++i) {
      if (!std::isfinite(s.xs[i])) continue;
      x_low = std::min(x_low, s.xs[i]);
      x_high = std::max(x_high, s.xs[i]);
      if (!usable(s.ys[i])) continue;
      y_low = std::min(y_low, s.ys[i]);
      y_high = std::max(y_high, s.ys[i]);
    }
  }
  std::vector<LegendEntry> legend;
  for (size_t i = 0; i < spec.series.size(); ++i) {
    const auto& s = spec.series[i];
    legend.push_back({s.name, s.color.empty() ? default_color(i) : s.color, s.dashed, false});
  }
  std::ostringstream out;
  Frame f = open_chart(out, spec.width, spec.height, spec.title, legend);
  bool have_x = x_low <= x_high, have_y = y_low <= y_high;
  if (!have_x) {
    x_low = 0;
    x_high = 1;
  }
  std::vector<double> x_ticks = nice_ticks(x_low, x_high, 6);
  f.x_low = x_low;
  f.x_high = x_high == x_low ? x_low + 1 : x_high;
  x_ticks.erase(std::remove_if(x_ticks.begin(), x_ticks.end(),
                               [&](double t) {
                                 double eps = (f.x_high - f.x_low) * 1e-9;
                                 return t < f.x_low - eps || t > f.x_high + eps;
                               }),
                x_ticks.end());
  std::vector<double> y_ticks =
      have_y ? fit_y(f, y_low, y_high, spec.y_min, spec.y_max, spec.log_y)
             : fit_y(f, spec.log_y ? 0.1 : 0.0, 1.0, spec.y_min, spec.y_max, spec.log_y);
  write_axes(out, f, x_ticks, y_ticks, spec.x_label, spec.y_label);
  if (!have_y) no_data(out, f);

  for (size_t i = 0; i < spec.series.size(); ++i) {
    const auto& s = spec.series[i];
    const std::string& color = legend[i].color;
    size_t n = std::min(s.xs.size(), s.ys.size());
    std::string path;
    std::vector<std::pair<double, double>> dots;  // lone points
    size_t run = 0;                               // finite points in the current piece
    double run_x = 0, run_y = 0;
    bool seen_finite = false, marked = false;
    auto end_piece = [&] {
      if (run == 1) dots.push_back({run_x, run_y});
      run = 0;
    };
    std::vector<double> diverged_at;
    for (size_t i2 = 0; i2 < n; ++i2) {
      if (!std::isfinite(s.xs[i2])) continue;
      if (!usable(s.ys[i2])) {
        // A non-positive value on a log axis is "off the axis", not divergence.
        bool divergence = !std::isfinite(s.ys[i2]);
        if (divergence && seen_finite && run > 0 && !marked) {
          diverged_at.push_back(f.px(s.xs[i2]));
          marked = true;
        }
        end_piece();
        continue;
      }
      double x = f.px(s.xs[i2]), y = f.py(s.ys[i2]);
      add_point(path, run == 0 ? "M" : "L", num(x), y);
      run_x = x;
      run_y = y;
      ++run;
      seen_finite = true;
    }
    end_piece();
    if (!seen_finite && n > 0) {
      bool any_nonfinite = false;
      double first_x = NAN;
      for (size_t i2 = 0; i2 < n; ++i2)
        if (std::isfinite(s.xs[i2]) && !std::isfinite(s.ys[i2])) {
          any_nonfinite = true;
          if (std::isnan(first_x)) first_x = s.xs[i2];
        }
      if (any_nonfinite) diverged_at.push_back(f.px(first_x));
    }
    if (!path.empty())
      out << "<path d=\"" << path << "\" style=\"fill:none;stroke:" << color
          << ";stroke-width:1.8;stroke-linejoin:round" << (s.dashed ? ";stroke-dasharray:6,3" : "")
          << "\"><title>" << escape_xml(s.name) << "</title></path>";
    for (auto [x, y] : dots)
      out << "<circle cx=\"" << num(x) << "\" cy=\"" << num(y) << "\" r=\"2.5\" style=\"fill:"
          << color << "\"/>";
    for (double x : diverged_at) {
      double y = f.top + 10 + 12 * static_cast<double>(i % 3);
      out << "<g class=\"diverged\"><path d=\"M" << num(x - 5) << " " << num(y - 5) << " L"
          << num(x + 5) << " " << num(y + 5) << " M" << num(x - 5) << " " << num(y + 5) << " L"
          << num(x + 5) << " " << num(y - 5) << "\" style=\"stroke:" << color
          << ";stroke-width:2.5\"/><text x=\"" << num(x + 8) << "\" y=\"" << num(y + 4)
          << "\" style=\"font-size:11px;fill:" << color << "\">diverged</text>"
          << "<title>" << escape_xml(s.name) << ": diverged</title></g>";
    }
  }
  out << "</svg>";
  return out.str();
}

/* Band chart: the polygon high(x0..xn) then low(xn..x0) filled at 25%
   opacity, per run of x where all three values are finite; the three lines on
   top, the middle one thicker. */
std::string band_chart_svg(const BandSpec& spec) {
  size_t n = std::min({spec.xs.size(), spec.low.size(), spec.mid.size(), spec.high.size()});
  auto finite_at = [&](size_t i) {
    return std::isfinite(spec.xs[i]) && std::isfinite(spec.low[i]) &&
           std::isfinite(spec.mid[i]) && std::isfinite(spec.high[i]);
  };
  double x_low = INFINITY, x_high = -INFINITY, y_low = INFINITY, y_high = -INFINITY;
  for (size_t i = 0; i < n; ++i) {
    if (!finite_at(i)) continue;
    x_low = std::min(x_low, spec.xs[i]);
    x_high = std::max(x_high, spec.xs[i]);
    y_low = std::min({y_low, spec.low[i], spec.mid[i], spec.high[i]});
    y_high = std::max({y_high, spec.low[i], spec.mid[i], spec.high[i]});
  }
  std::vector<LegendEntry> legend = {{spec.low_name + " to " + spec.high_name, spec.color, false, true},
                                     {spec.mid_name, spec.color, false, false}};
  std::ostringstream out;
  Frame f = open_chart(out, spec.width, spec.height, spec.title, legend);
  bool have = x_low <= x_high;
  if (!have) {
    x_low = 0;
    x_high = 1;
    y_low = 0;
    y_high = 1;
  }
  f.x_low = x_low;
  f.x_high = x_high == x_low ? x_low + 1 : x_high;
  auto x_ticks = nice_ticks(f.x_low, f.x_high, 5);
  x_ticks.erase(std::remove_if(x_ticks.begin(), x_ticks.end(),
                               [&](double t) {
                                 double eps = (f.x_high - f.x_low) * 1e-9;
                                 return t < f.x_low - eps || t > f.x_high + eps;
                               }),
                x_ticks.end());
  auto y_ticks = fit_y(f, y_low, y_high, spec.y_min, spec.y_max, false);
  write_axes(out, f, x_ticks, y_ticks, spec.x_label, spec.y_label);
  if (!have) no_data(out, f);

  // Pieces of consecutive finite points.
  size_t i = 0;
  while (i < n) {
    while (i < n && !finite_at(i)) ++i;
    size_t begin = i;
    while (i < n && finite_at(i)) ++i;
    size_t end = i;
    if (end <= begin) continue;
    std::string band, low_line, mid_line, high_line;
    for (size_t k = begin; k < end; ++k) {
      std::string x = num(f.px(spec.xs[k]));
      const char* cmd = k == begin ? "M" : "L";
      add_point(band, cmd, x, f.py(spec.high[k]));
      add_point(low_line, cmd, x, f.py(spec.low[k]));
      add_point(mid_line, cmd, x, f.py(spec.mid[k]));
      add_point(high_line, cmd, x, f.py(spec.high[k]));
    }
    for (size_t k = end; k-- > begin;) add_point(band, "L", num(f.px(spec.xs[k])), f.py(spec.low[k]));
    band += "Z";
    out << "<path d=\"" << band << "\" style=\"fill:" << spec.color
        << ";fill-opacity:0.25;stroke:none\"/>"
        << "<path d=\"" << low_line << "\" style=\"fill:none;stroke:" << spec.color
        << ";stroke-width:1\"><title>" << escape_xml(spec.low_name) << "</title></path>"
        << "<path d=\"" << high_line << "\" style=\"fill:none;stroke:" << spec.color
        << ";stroke-width:1\"><title>" << escape_xml(spec.high_name) << "</title></path>"
        << "<path d=\"" << mid_line << "\" style=\"fill:none;stroke:" << spec.color
        << ";stroke-width:2.2\"><title>" << escape_xml(spec.mid_name) << "</title></path>";
    if (end - begin == 1) {
      out << "<circle cx=\"" << num(f.px(spec.xs[begin])) << "\" cy=\""
          << num(f.py(spec.mid[begin])) << "\" r=\"2.5\" style=\"fill:" << spec.color << "\"/>";
    }
  }
  out << "</svg>";
  return out.str();
}

/* Grouped bars: category c occupies [c, c+1) of the x axis; its bars share 80%
   of that width. The baseline is 0 when 0 lies in the y range. A NaN value
   gets a grey X at the baseline and the missing label written upwards. */
std::string bar_chart_svg(const BarChartSpec& spec) {
  size_t categories = spec.categories.size(), nseries = spec.series.size();
  double v_low = INFINITY, v_high = -INFINITY;
  for (const auto& s : spec.series)
    for (double v : s.values)
      if (std::isfinite(v)) {
        v_low = std::min(v_low, v);
        v_high = std::max(v_high, v);
      }
  std::vector<LegendEntry> legend;
  for (size_t i = 0; i < nseries; ++i)
    legend.push_back({spec.series[i].name,
                      spec.series[i].color.empty() ? default_color(i) : spec.series[i].color,
                      false, true});
  std::ostringstream out;
  Frame f = open_chart(out, spec.width, spec.height, spec.title, legend, 14);  // room for values
  f.x_low = 0;
  f.x_high = std::max<double>(1, static_cast<double>(categories));
  bool have = v_low <= v_high;
  if (!have) {
    v_low = 0;
    v_high = 1;
  }
  // Bars grow from 0: include it unless the caller fixed the range.
  double lo = std::isfinite(spec.y_min) ? spec.y_min : std::min(0.0, v_low);
  double hi = std::isfinite(spec.y_max) ? spec.y_max : std::max(0.0, v_high);
  auto y_ticks = fit_y(f, lo, hi, spec.y_min, spec.y_max, false);
  write_axes(out, f, {}, y_ticks, spec.x_label, spec.y_label);
  if (!have) no_data(out, f);
  double baseline_value = std::clamp(0.0, f.y_low, f.y_high);
  double baseline = f.py(baseline_value);
  double slot = (f.right - f.left) / f.x_high;
  double bar_width = nseries ? slot * 0.8 / static_cast<double>(nseries) : 0;
  for (size_t c = 0; c < categories; ++c) {
    double center = f.left + (static_cast<double>(c) + 0.5) * slot;
    out << "<text x=\"" << num(center) << "\" y=\"" << num(f.bottom + 16)
        << "\" style=\"font-size:11px;fill:#444;text-anchor:middle\">"
        << escape_xml(spec.categories[c]) << "</text>";
    for (size_t s = 0; s < nseries; ++s) {
      const auto& series = spec.series[s];
      double x = f.left + static_cast<double>(c) * slot + slot * 0.1 +
                 static_cast<double>(s) * bar_width;
      double v = c < series.values.size() ? series.values[c] : NAN;
      const std::string& color = legend[s].color;
      if (!std::isfinite(v)) {
        double cx = x + bar_width / 2, cy = baseline - 8;
        out << "<g class=\"diverged\"><path d=\"M" << num(cx - 5) << " " << num(cy - 5) << " L"
            << num(cx + 5) << " " << num(cy + 5) << " M" << num(cx - 5) << " " << num(cy + 5)
            << " L" << num(cx + 5) << " " << num(cy - 5) << "\" style=\"stroke:" << color
            << ";stroke-width:2.5\"/><text x=\"" << num(cx + 4) << "\" y=\"" << num(cy - 10)
            << "\" transform=\"rotate(-90 " << num(cx + 4) << " " << num(cy - 10)
            << ")\" style=\"font-size:11px;fill:" << color << "\">"
            << escape_xml(spec.missing_label) << "</text><title>" << escape_xml(series.name)
            << ", " << escape_xml(spec.categories[c]) << ": " << escape_xml(spec.missing_label)
            << "</title></g>";
        continue;
      }
      double y = f.py(v);
      double top = std::min(y, baseline), height = std::abs(baseline - y);
      out << "<rect x=\"" << num(x) << "\" y=\"" << num(top) << "\" width=\""
          << num(bar_width * 0.92) << "\" height=\"" << num(std::max(height, 0.5))
          << "\" style=\"fill:" << color << ";fill-opacity:0.85\"><title>"
          << escape_xml(series.name) << ", " << escape_xml(spec.categories[c]) << ": "
          << format_tick(v) << "</title></rect>";
      if (spec.value_decimals >= 0) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.*f", spec.value_decimals, v);
        double ty = v >= baseline_value ? top - 3 : top + height + 11;
        out << "<text x=\"" << num(x + bar_width * 0.46) << "\" y=\"" << num(ty)
            << "\" style=\"font-size:10px;fill:#333;text-anchor:middle\">" << buf << "</text>";
      }
    }
  }
  out << "</svg>";
  return out.str();
}

namespace {

// `color` ("#rrggbb") mixed with white: t = 0 white, t = 1 the color.
std::string shade(const std::string& color, double t) {
  unsigned rgb = 0x1f77b4;
  if (color.size() == 7 && color[0] == '#') rgb = static_cast<unsigned>(std::stoul(color.substr(1), nullptr, 16));
  t = std::clamp(t, 0.0, 1.0);
  char buf[8];
  int channel[3];
  for (int k = 0; k < 3; ++k) {
    double c = static_cast<double>((rgb >> (16 - 8 * k)) & 0xff);
    channel[k] = static_cast<int>(std::lround(255.0 + (c - 255.0) * t));
  }
  std::snprintf(buf, sizeof buf, "#%02x%02x%02x", channel[0], channel[1], channel[2]);
  return buf;
}

}  // namespace

/* Layout: title, the scale (five swatches from value_min to value_max) where
   the legend goes, then the grid: columns evenly over the frame's width, rows
   over its height, row names left of the frame, column names under it. */
std::string heatmap_svg(const HeatmapSpec& spec) {
  std::ostringstream out;
  Frame f = open_chart(out, spec.width, spec.height, spec.title, {}, kLegendRow);
  const double span = spec.value_max - spec.value_min;
  auto fraction = [&](double v) { return span > 0 ? (v - spec.value_min) / span : 1.0; };
  double x = kMarginLeft, y = kTitleHeight + 4;
  out << "<text x=\"" << num(x) << "\" y=\"" << num(y + 10)
      << "\" style=\"font-size:12px;fill:#222\">" << escape_xml(spec.value_name) << "</text>";
  x += 14 + 6.5 * static_cast<double>(spec.value_name.size());
  for (int k = 0; k <= 4; ++k) {
    double v = spec.value_min + span * k / 4.0;
    out << "<rect x=\"" << num(x) << "\" y=\"" << num(y) << "\" width=\"16\" height=\"12\" "
        << "style=\"fill:" << shade(spec.color, k / 4.0) << ";stroke:#bbb\"/>"
        << "<text x=\"" << num(x + 20) << "\" y=\"" << num(y + 10)
        << "\" style=\"font-size:11px;fill:#444\">" << format_tick(v) << "</text>";
    x += 56;
  }
  const size_t ncols = spec.columns.size(), nrows = spec.rows.size();
  if (ncols == 0 || nrows == 0) {
    write_axes(out, f, {}, {}, spec.x_label, spec.y_label);
    no_data(out, f);
    out << "</svg>";
    return out.str();
  }
  const double cell_w = (f.right - f.left) / static_cast<double>(ncols);
  const double cell_h = (f.bottom - f.top) / static_cast<double>(nrows);
  for (size_t c = 0; c < ncols; ++c)
    out << "<text x=\"" << num(f.left + (static_cast<double>(c) + 0.5) * cell_w) << "\" y=\""
        << num(f.bottom + 16) << "\" style=\"font-size:11px;fill:#444;text-anchor:middle\">"
        << escape_xml(spec.columns[c]) << "</text>";
  for (size_t r = 0; r < nrows; ++r) {
    const double top = f.top + static_cast<double>(r) * cell_h;
    out << "<text x=\"" << num(f.left - 6) << "\" y=\"" << num(top + cell_h / 2 + 4)
        << "\" style=\"font-size:11px;fill:#444;text-anchor:end\">" << escape_xml(spec.rows[r])
        << "</text>";
    for (size_t c = 0; c < ncols; ++c) {
      const double left = f.left + static_cast<double>(c) * cell_w;
      const double cx = left + cell_w / 2, cy = top + cell_h / 2;
      double v = r < spec.values.size() && c < spec.values[r].size() ? spec.values[r][c] : NAN;
      std::string where = escape_xml(spec.rows[r]) + ", " + escape_xml(spec.columns[c]) + ": ";
      if (!std::isfinite(v)) {
        out << "<g class=\"diverged\"><rect x=\"" << num(left) << "\" y=\"" << num(top)
            << "\" width=\"" << num(cell_w) << "\" height=\"" << num(cell_h)
            << "\" style=\"fill:#d9d9d9;stroke:#fff\"/><text x=\"" << num(cx) << "\" y=\""
            << num(cy + 4) << "\" style=\"font-size:11px;fill:#555;text-anchor:middle\">"
            << escape_xml(spec.missing_label) << "</text><title>" << where
            << escape_xml(spec.missing_label) << "</title></g>";
        continue;
      }
      double t = fraction(v);
      out << "<rect class=\"cell\" x=\"" << num(left) << "\" y=\"" << num(top) << "\" width=\""
          << num(cell_w) << "\" height=\"" << num(cell_h) << "\" style=\"fill:"
          << shade(spec.color, t) << ";stroke:#fff\"><title>" << where << format_tick(v)
          << "</title></rect>";
      if (spec.value_decimals >= 0) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.*f", spec.value_decimals, v);
        out << "<text x=\"" << num(cx) << "\" y=\"" << num(cy + 4) << "\" style=\"font-size:11px;fill:"
            << (t > 0.6 ? "#fff" : "#222") << ";text-anchor:middle\">" << buf << "</text>";
      }
    }
  }
  write_axes(out, f, {}, {}, spec.x_label, spec.y_label);  // the frame over the cells
  out << "</svg>";
  return out.str();
}

}  // namespace bnlab::lab
