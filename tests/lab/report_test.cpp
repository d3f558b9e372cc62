// The report: one self-contained page (no script, no external resource), a
// section per experiment with its verdict, results.json counting the charts,
// a CSV per experiment.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "bnlab/lab/chart.hpp"
#include "count_text.hpp"
#include "bnlab/lab/report.hpp"

using namespace bnlab::lab;

namespace {

Report sample_report() {
  ChartSpec spec;
  spec.title = "loss";
  spec.series = {{"without BN", {0, 1, 2}, {2, 1, NAN}, "", false}};
  ExperimentReport a;
  a.name = "convergence";
  a.title = "1. Convergence";
  a.claim = "BN converges in fewer steps & <faster>.";
  a.charts = {{line_chart_svg(spec), "caption"}, {line_chart_svg(spec), ""}};
  a.table = {{"network", "steps"}, {{"without BN", "1200"}, {"with, BN", "300"}}};
  a.verdict = {Verdict::supported, "0.25x the steps"};
  a.results = {{"ratio", 0.25}};
  ExperimentReport b;
  b.name = "depth";
  b.title = "5. Depth";
  b.claim = "deeper";
  b.charts = {{line_chart_svg(spec), ""}};
  b.verdict = {Verdict::not_supported, "no difference"};
  b.csv = "custom,csv\n1,2\n";
  Report r;
  r.subtitle = "test";
  r.experiments = {a, b};
  return r;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

TEST(Report, HtmlIsSelfContainedWithASectionAndVerdictPerExperiment) {
  std::string html = report_html(sample_report());
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_EQ(html.find("<script"), std::string::npos);
  // No address but the SVG namespace (which is a name, never fetched).
  EXPECT_EQ(count_text(html, "http"), count_text(html, "http://www.w3.org/2000/svg\""));
  EXPECT_EQ(html.find("src="), std::string::npos);
  EXPECT_EQ(count_text(html, "<section"), 2);
  EXPECT_EQ(count_text(html, "class=\"chart\""), 3);
  EXPECT_NE(html.find("v-supported"), std::string::npos);
  EXPECT_NE(html.find("v-not-supported"), std::string::npos);
  EXPECT_NE(html.find("BN converges in fewer steps &amp; &lt;faster&gt;."), std::string::npos);
}

TEST(Report, JsonCountsChartsAndKeepsVerdicts) {
  nlohmann::json j = report_json(sample_report());
  EXPECT_EQ(j["charts"], 3);
  ASSERT_EQ(j["experiments"].size(), 2u);
  EXPECT_EQ(j["experiments"][0]["verdict"], "supported");
  EXPECT_EQ(j["experiments"][1]["verdict"], "not supported");
  EXPECT_EQ(j["experiments"][0]["results"]["ratio"], 0.25);
}

TEST(Report, CsvQuotesCellsThatNeedIt) {
  Table t{{"a", "b"}, {{"x,y", "say \"hi\""}, {"1", "2"}}};
  EXPECT_EQ(table_csv(t), "a,b\n\"x,y\",\"say \"\"hi\"\"\"\n1,2\n");
}

TEST(Report, WritesHtmlJsonAndOneCsvPerExperimentIntoANewFolder) {
  std::string dir = std::filesystem::temp_directory_path() /
                    ("bnlab_report_test_" + std::to_string(::getpid())) / "nested";
  std::string path = write_report(sample_report(), dir);
  EXPECT_EQ(path, dir + "/report.html");
  EXPECT_NE(slurp(path).find("</html>"), std::string::npos);
  EXPECT_EQ(nlohmann::json::parse(slurp(dir + "/results.json"))["charts"], 3);
  EXPECT_EQ(slurp(dir + "/convergence.csv"), "network,steps\nwithout BN,1200\n\"with, BN\",300\n");
  EXPECT_EQ(slurp(dir + "/depth.csv"), "custom,csv\n1,2\n");
  std::filesystem::remove_all(std::filesystem::path(dir).parent_path());
}

TEST(Report, UnwritableFolderIsAnErrorNamingIt) {
  try {
    write_report(sample_report(), "/proc/bnlab_cannot_write_here");
    FAIL() << "expected an error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("/proc/bnlab_cannot_write_here"), std::string::npos) << e.what();
  }
}
