// Internal to the lab: the pieces every experiment's report is built from
// (number formats, the accuracy chart, the runs as JSON and CSV), defined in
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
std::vector<double> to_double(const std::vector<int64_t>& v);
// Test accuracy over training steps, y from 0 to 1.
ChartSpec accuracy_chart(const std::string& title);
Series accuracy_series(const RunResult& r, const std::string& name, const std::string& color,
                       bool dashed = false);
// Every run's numbers and curves for results.json (NaN becomes null).
nlohmann::json runs_json(const std::vector<RunResult>& results);
// The summary table, then every curve of every run as one long CSV.
std::string curves_csv(const Table& summary, const std::vector<RunResult>& results);

}  // namespace bnlab::lab
