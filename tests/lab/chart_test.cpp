// Charts: each is one well-formed <svg class="chart"> with a <title>; NaN and
// Inf break a line and are marked "diverged"; ticks are nice numbers.
#include <gtest/gtest.h>

#include <cmath>
#include <regex>
#include <string>
#include <vector>

#include "bnlab/lab/chart.hpp"
#include "count_text.hpp"

using namespace bnlab::lab;

namespace {

// A small well-formedness check: tags nest and close in order, attribute
// values are quoted, no raw '<' or '&' in text. Returns "" or the problem.
std::string xml_problem(const std::string& s) {
  std::vector<std::string> stack;
  size_t i = 0;
  while (i < s.size()) {
    if (s[i] == '&') {
      size_t semi = s.find(';', i);
      if (semi == std::string::npos || semi - i > 6) return "raw & at " + std::to_string(i);
      i = semi + 1;
      continue;
    }
    if (s[i] != '<') {
      ++i;
      continue;
    }
    size_t close = s.find('>', i);
    if (close == std::string::npos) return "unclosed tag at " + std::to_string(i);
    std::string tag = s.substr(i + 1, close - i - 1);
    if (tag.find('<') != std::string::npos) return "'<' inside a tag at " + std::to_string(i);
    if (count_text(tag, "\"") % 2 != 0) return "unbalanced quotes in <" + tag + ">";
    if (tag[0] == '/') {
      std::string name = tag.substr(1);
      if (stack.empty() || stack.back() != name) return "unexpected </" + name + ">";
      stack.pop_back();
    } else if (tag.back() != '/') {
      stack.push_back(tag.substr(0, tag.find_first_of(" \t\n")));
    }
    i = close + 1;
  }
  if (!stack.empty()) return "unclosed <" + stack.back() + ">";
  return "";
}

std::vector<double> path_numbers(const std::string& d) {
  std::vector<double> out;
  std::regex number(R"(-?[0-9]+(\.[0-9]+)?)");
  for (std::sregex_iterator it(d.begin(), d.end(), number), end; it != end; ++it)
    out.push_back(std::stod(it->str()));
  return out;
}

ChartSpec two_series() {
  ChartSpec spec;
  spec.title = "training loss";
  spec.x_label = "step";
  spec.y_label = "loss";
  spec.series = {{"without BN", {0, 1, 2, 3}, {2.3, 1.5, 1.1, 0.9}, "", false},
                 {"with BN", {0, 1, 2, 3}, {2.3, 0.9, 0.6, 0.5}, "", false}};
  return spec;
}

}  // namespace

TEST(LineChart, IsOneWellFormedSvgWithClassChartSizeAndTitle) {
  std::string svg = line_chart_svg(two_series());
  EXPECT_EQ(xml_problem(svg), "");
  EXPECT_EQ(count_text(svg, "<svg "), 1);
  EXPECT_EQ(count_text(svg, "class=\"chart\""), 1);
  EXPECT_NE(svg.find("viewBox=\"0 0 560 340\""), std::string::npos);
  EXPECT_NE(svg.find("<title>training loss</title>"), std::string::npos);
  EXPECT_NE(svg.find(">without BN<"), std::string::npos);  // legend
  EXPECT_NE(svg.find(">with BN<"), std::string::npos);
  EXPECT_EQ(svg.find("<script"), std::string::npos);
  EXPECT_EQ(count_text(svg, "diverged"), 0);
}

TEST(LineChart, FixedRangeMapsCornersToTheFrame) {
  ChartSpec spec;
  spec.title = "t";
  spec.series = {{"a", {0, 1}, {0, 1}, "#000", false}};
  spec.y_min = 0;
  spec.y_max = 1;
  std::string svg = line_chart_svg(spec);
  std::smatch m;
  ASSERT_TRUE(std::regex_search(svg, m, std::regex("<path d=\"(M[^\"]*)\" style=\"fill:none;stroke:#000")));
  std::vector<double> xy = path_numbers(m[1].str());
  ASSERT_EQ(xy.size(), 4u);
  // Frame: left 64, right 560-18, top 24+8+one legend row of 18, bottom 340-46.
  EXPECT_NEAR(xy[0], 64.0, 0.05);
  EXPECT_NEAR(xy[1], 294.0, 0.05);
  EXPECT_NEAR(xy[2], 542.0, 0.05);
  EXPECT_NEAR(xy[3], 50.0, 0.05);
}

TEST(LineChart, NonFiniteLossBreaksTheLineAndIsMarkedDiverged) {
  ChartSpec spec;
  spec.title = "lr 2";
  spec.series = {{"run", {0, 1, 2, 3, 4, 5}, {1.0, 0.8, NAN, 0.7, 0.6, INFINITY}, "#000", false}};
  std::string svg = line_chart_svg(spec);
  EXPECT_EQ(xml_problem(svg), "");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(svg, m, std::regex("<path d=\"(M[^\"]*)\" style=\"fill:none;stroke:#000")));
  EXPECT_EQ(count_text(m[1].str(), "M"), 2);  // two pieces: [0, 1] and [3, 4]
  EXPECT_EQ(count_text(m[1].str(), "L"), 2);
  EXPECT_EQ(count_text(svg, "class=\"diverged\""), 1);  // marked once, at the first break
  EXPECT_EQ(svg.find("nan"), std::string::npos);
  EXPECT_EQ(svg.find("inf"), std::string::npos);
}

TEST(LineChart, SeriesWithNoFinitePointIsMarkedDivergedAndAxesStillDrawn) {
  ChartSpec spec;
  spec.title = "all NaN";
  spec.series = {{"run", {0, 1, 2}, {NAN, NAN, NAN}, "", false}};
  std::string svg = line_chart_svg(spec);
  EXPECT_EQ(xml_problem(svg), "");
  EXPECT_EQ(count_text(svg, "class=\"diverged\""), 1);
  EXPECT_NE(svg.find("no finite data"), std::string::npos);
  EXPECT_EQ(svg.find("nan"), std::string::npos);
}

TEST(LineChart, LogAxisUsesDecadeTicksAndSkipsNonPositiveValues) {
  ChartSpec spec;
  spec.title = "log";
  spec.log_y = true;
  spec.series = {{"run", {0, 1, 2, 3}, {2.0, 0.0, 0.05, 0.002}, "", false}};
  std::string svg = line_chart_svg(spec);
  EXPECT_EQ(xml_problem(svg), "");
  EXPECT_EQ(count_text(svg, "class=\"diverged\""), 0);  // zero on a log axis is not divergence
  EXPECT_NE(svg.find(">0.001<"), std::string::npos);
  EXPECT_NE(svg.find(">10<"), std::string::npos);
}

TEST(LineChart, EscapesNamesAndTitle) {
  ChartSpec spec = two_series();
  spec.title = "a < b & \"c\"";
  spec.series[0].name = "<script>";
  std::string svg = line_chart_svg(spec);
  EXPECT_EQ(xml_problem(svg), "");
  EXPECT_EQ(svg.find("<script>"), std::string::npos);
  EXPECT_NE(svg.find("a &lt; b &amp; &quot;c&quot;"), std::string::npos);
}

TEST(BandChart, FillsOneBandPerFinitePieceWithThreeLines) {
  BandSpec spec;
  spec.title = "input to a sigmoid";
  spec.xs = {0, 10, 20, 30, 40};
  spec.low = {-1, -1.2, NAN, -1.5, -1.6};
  spec.mid = {0, 0.1, NAN, 0.2, 0.3};
  spec.high = {1, 1.3, NAN, 1.9, 2.1};
  std::string svg = band_chart_svg(spec);
  EXPECT_EQ(xml_problem(svg), "");
  EXPECT_EQ(count_text(svg, "class=\"chart\""), 1);
  EXPECT_EQ(count_text(svg, "fill-opacity:0.25"), 2);  // pieces [0, 10] and [30, 40]
  EXPECT_EQ(count_text(svg, "<title>50th percentile</title>"), 2);
  EXPECT_EQ(svg.find("nan"), std::string::npos);
}

TEST(BarChart, DrawsABarPerFiniteValueAndMarksMissingOnes) {
  BarChartSpec spec;
  spec.title = "final test accuracy";
  spec.categories = {"0.01", "0.1", "1", "2"};
  spec.series = {{"without BN", {0.80, 0.85, NAN, NAN}, ""}, {"with BN", {0.84, 0.87, 0.88, 0.86}, ""}};
  std::string svg = bar_chart_svg(spec);
  EXPECT_EQ(xml_problem(svg), "");
  EXPECT_EQ(count_text(svg, "<rect x="), 6 + 1 + 2);  // 6 bars, the frame, 2 legend boxes
  EXPECT_EQ(count_text(svg, "class=\"diverged\""), 2);
  EXPECT_NE(svg.find(">0.88<"), std::string::npos);  // value above its bar
  EXPECT_EQ(svg.find("nan"), std::string::npos);
}

// Expected ticks from a plain float64 reference: step = the smallest of
// {1, 2, 5, 10} * 10^floor(log10(range/target)) not below range/target.
static std::vector<double> reference_ticks(double low, double high, int target) {
  double raw = (high - low) / target;
  double power = std::pow(10.0, std::floor(std::log10(raw)));
  double step = 0;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * power >= raw) {
      step = m * power;
      break;
    }
  std::vector<double> ticks;
  for (double k = std::floor(low / step); k <= std::ceil(high / step); k += 1) ticks.push_back(k * step);
  return ticks;
}

TEST(Ticks, NiceTicksAreOneTwoFiveTimesAPowerOfTenCoveringTheRange) {
  for (auto [lo, hi] : std::vector<std::pair<double, double>>{
           {0, 1}, {0, 0.93}, {3, 97}, {-2.5, 7.1}, {0.1, 0.35}, {1000, 5400}}) {
    auto got = nice_ticks(lo, hi, 5);
    auto want = reference_ticks(lo, hi, 5);
    ASSERT_EQ(got.size(), want.size()) << lo << ".." << hi;
    for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-12) << lo << ".." << hi;
    EXPECT_LE(got.front(), lo);
    EXPECT_GE(got.back(), hi);
  }
  auto flat = nice_ticks(0.5, 0.5);
  EXPECT_LT(flat.front(), 0.5);
  EXPECT_GT(flat.back(), 0.5);
}

TEST(Ticks, LogTicksAreDecades) {
  EXPECT_EQ(log_ticks(0.01, 100), (std::vector<double>{0.01, 0.1, 1, 10, 100}));
  EXPECT_EQ(log_ticks(0.1, 10).size(), 7u);  // 0.1 0.2 0.5 1 2 5 10
}

TEST(Ticks, LabelsAreShort) {
  EXPECT_EQ(format_tick(0.2), "0.2");
  EXPECT_EQ(format_tick(1000), "1000");
  EXPECT_EQ(format_tick(0), "0");
  EXPECT_EQ(format_tick(1e-5), "1e-5");
  EXPECT_EQ(format_tick(2.5), "2.5");
  EXPECT_EQ(format_tick(0.1 + 0.2), "0.3");
}

TEST(Heatmap, ShadesACellPerFiniteValueAndMarksMissingOnes) {
  HeatmapSpec spec;
  spec.title = "lr x depth";
  spec.columns = {"0.01", "0.1", "1"};
  spec.rows = {"2", "10"};
  spec.values = {{0.0, 0.5, 1.0}, {0.25, NAN, 2.0}};
  spec.color = "#000000";
  std::string svg = heatmap_svg(spec);
  EXPECT_EQ(xml_problem(svg), "");
  EXPECT_EQ(count_text(svg, "<svg "), 1);
  EXPECT_EQ(count_text(svg, "class=\"cell\""), 5);
  EXPECT_EQ(count_text(svg, "class=\"diverged\""), 1);
  // Plain reference: white at value_min, the color at value_max, clamped above it.
  EXPECT_NE(svg.find("fill:#ffffff;stroke:#fff\"><title>2, 0.01: 0<"), std::string::npos);
  EXPECT_NE(svg.find("fill:#808080;stroke:#fff\"><title>2, 0.1: 0.5<"), std::string::npos);
  EXPECT_NE(svg.find("fill:#000000;stroke:#fff\"><title>10, 1: 2<"), std::string::npos);
  EXPECT_NE(svg.find(">0.25<"), std::string::npos);  // the value written in its cell
  EXPECT_EQ(svg.find("nan"), std::string::npos);
}

TEST(Heatmap, EmptyGridSaysNoData) {
  HeatmapSpec spec;
  spec.title = "empty";
  std::string svg = heatmap_svg(spec);
  EXPECT_EQ(xml_problem(svg), "");
  EXPECT_NE(svg.find("no finite data"), std::string::npos);
}
