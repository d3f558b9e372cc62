// Internal to the lab: the pieces every experiment's report is built from
// (number formats, the standard charts, the runs as JSON and CSV), defined in
// experiments.cpp and shared with the experiments in other files.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bnlab/lab/chart.hpp"
#include "bnlab/lab/report.hpp"
#include "runner.hpp"

namespace bnlab::lab {

std::string fmt(double v, int decimals = 3);  // NaN: "diverged"
std::string fmt_g(double v);                  // %g
const char* bn_name(bool with_bn);            // "with BN" / "without BN"
const char* bn_color(bool with_bn);
std::vector<double> to_double(const std::vector<int64_t>& v);
std::string with_bn_label(const std::string& what, bool with_bn);  // "what, with BN"
// Test accuracy over training steps, y from 0 to 1; training loss, log y.
ChartSpec accuracy_chart(const std::string& title);
ChartSpec loss_chart(const std::string& title);
Series accuracy_series(const RunResult& r, const std::string& name, const std::string& color,
                       bool dashed = false);
Series loss_series(const RunResult& r, const std::string& name, const std::string& color,
                   bool dashed = false);
// Grouped "without BN" / "with BN" bars of final test accuracy, y from 0 to 1.
BarChartSpec accuracy_bars(const std::string& title, const std::string& x_label);
void add_bar_pair(BarChartSpec& bars, const std::string& category, double without_bn, double with_bn);
// Every run's numbers and curves for results.json (NaN becomes null).
nlohmann::json run_json(const RunResult& r);
nlohmann::json runs_json(const std::vector<RunResult>& results);
// The summary table, then every curve of every run as one long CSV.
std::string curves_csv(const Table& summary, const std::vector<RunResult>& results);
// The run with this label; throws Error when none has it.
const RunResult& find(const std::vector<RunResult>& results, const std::string& label);
// A note per diverged run.
void note_divergences(ExperimentReport& r, const std::vector<RunResult>& results);

}  // namespace bnlab::lab
