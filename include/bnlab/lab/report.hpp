// The benefits report: one self-contained HTML file (inline CSS and SVG, no
// scripts, no network), results.json and one CSV per experiment, all written
// atomically. A section per experiment: the claim, how it was measured, the
// charts, a table of numbers and a verdict computed from those numbers.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace bnlab::lab {

enum class Verdict { supported, not_supported, mixed };
const char* verdict_name(Verdict verdict);  // "supported", "not supported", "mixed"

struct VerdictResult {
  Verdict verdict = Verdict::mixed;
  std::string reason;  // the deciding figure(s) and the rule, e.g. "BN reached 80% in 0.42x the steps (rule: ratio <= 0.8)"
};

struct Table {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
};

// A table as CSV (RFC 4180 quoting where a cell needs it).
std::string table_csv(const Table& table);

struct Chart {
  std::string svg;      // from line_chart_svg / band_chart_svg / bar_chart_svg
  std::string caption;  // one sentence under it; may be empty
};

struct ExperimentReport {
  std::string name;   // "convergence": the --only name and the CSV file name
  std::string title;  // "1. Convergence"
  std::string claim;  // what the literature says
  std::string setup;  // how it was measured here
  std::vector<Chart> charts;
  Table table;
  VerdictResult verdict;
  std::vector<std::string> notes;  // caveats, impossible modes and why
  std::string csv;                 // contents of <name>.csv (the table when empty)
  nlohmann::json results;          // the numbers behind the charts, for results.json
  double seconds = 0.0;            // wall time of the experiment
};

struct Report {
  std::string title = "What batch normalization does: measured";
  std::string subtitle;  // data set, seed, threads, quick/full
  nlohmann::json settings;
  std::vector<ExperimentReport> experiments;
};

// The HTML page as a string (deterministic for a given report).
std::string report_html(const Report& report);

// results.json: settings, and per experiment its name, title, verdict, reason,
// chart count, seconds and results; "charts" at the top is the total number
// of <svg class="chart"> in report.html.
nlohmann::json report_json(const Report& report);

// Writes dir/report.html, dir/results.json and dir/<name>.csv for each
// experiment (creating dir). Returns the path of report.html. Throws
// bnlab::Error(io) naming the file on failure.
std::string write_report(const Report& report, const std::string& dir);

}  // namespace bnlab::lab
