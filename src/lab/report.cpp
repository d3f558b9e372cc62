// The HTML report, results.json and the CSVs (see include/bnlab/lab/report.hpp).
#include "bnlab/lab/report.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <sstream>

#include "bnlab/error.hpp"
#include "bnlab/io/atomic_file.hpp"
#include "bnlab/io/safetensors.hpp"
#include "bnlab/lab/chart.hpp"

namespace bnlab::lab {
namespace {

// No script, no external resource: the page is complete on its own.
constexpr const char* kStyle = R"(
body{font-family:Helvetica,Arial,sans-serif;margin:24px auto;max-width:1180px;color:#1a1a1a;line-height:1.45;padding:0 16px}
h1{font-size:26px;margin-bottom:4px}
h2{font-size:20px;margin:0 0 6px 0}
.subtitle{color:#555;margin-top:0}
section{border-top:2px solid #ddd;padding:18px 0 10px 0;margin-top:18px}
.claim{font-size:15px}
.setup{color:#444;font-size:13px}
.charts{display:flex;flex-wrap:wrap;gap:14px;margin:10px 0}
figure{margin:0;border:1px solid #eee;padding:4px}
figcaption{font-size:12px;color:#555;max-width:560px;padding:2px 4px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}
.verdict{font-weight:bold;padding:2px 9px;border-radius:4px;color:#fff;white-space:nowrap}
.v-supported{background:#2e7d32}
.v-not-supported{background:#c62828}
.v-mixed{background:#ef8f00}
.verdict-line{font-size:15px;margin:8px 0}
.notes{font-size:13px;color:#444}
.summary td,.summary th{text-align:left;vertical-align:top}
.footer{color:#777;font-size:12px;margin-top:28px}
)";

std::string verdict_class(Verdict v) {
  switch (v) {
    case Verdict::supported: return "v-supported";
    case Verdict::not_supported: return "v-not-supported";
    default: return "v-mixed";
  }
}

std::string badge(Verdict v) {
  return std::string("<span class=\"verdict ") + verdict_class(v) + "\">" + verdict_name(v) +
         "</span>";
}

void write_table(std::ostringstream& out, const Table& table) {
  if (table.header.empty() && table.rows.empty()) return;
  out << "<table>";
  if (!table.header.empty()) {
    out << "<tr>";
    for (const auto& h : table.header) out << "<th>" << escape_xml(h) << "</th>";
    out << "</tr>";
  }
  for (const auto& row : table.rows) {
    out << "<tr>";
    for (const auto& cell : row) out << "<td>" << escape_xml(cell) << "</td>";
    out << "</tr>";
  }
  out << "</table>";
}

void make_folder(const std::string& dir) {
  // mkdir -p: each prefix that ends at a '/'.
  for (size_t pos = 1; pos <= dir.size(); ++pos) {
    if (pos != dir.size() && dir[pos] != '/') continue;
    std::string prefix = dir.substr(0, pos);
    if (::mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST)
      throw Error(ErrorCode::io, "cannot create folder " + prefix + " for the report (--out " +
                                     dir + "): " + std::strerror(errno));
  }
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    throw Error(ErrorCode::io, "--out " + dir + " is not a folder");
}

}  // namespace

const char* verdict_name(Verdict verdict) {
  switch (verdict) {
    case Verdict::supported: return "supported";
    case Verdict::not_supported: return "not supported";
    default: return "mixed";
  }
}

std::string table_csv(const Table& table) {
  auto cell = [](const std::string& text) {
    if (text.find_first_of(",\"\n\r") == std::string::npos) return text;
    std::string quoted = "\"";
    for (char c : text) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
    return quoted + "\"";
  };
  std::string out;
  auto line = [&](const std::vector<std::string>& cells) {
    for (size_t i = 0; i < cells.size(); ++i) out += (i ? "," : "") + cell(cells[i]);
    out += "\n";
  };
  if (!table.header.empty()) line(table.header);
  for (const auto& row : table.rows) line(row);
  return out;
}

std::string report_html(const Report& report) {
  std::ostringstream out;
  out << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
      << "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
      << "<title>" << escape_xml(report.title) << "</title><style>" << kStyle
      << "</style></head><body>\n";
  out << "<h1>" << escape_xml(report.title) << "</h1>";
  if (!report.subtitle.empty())
    out << "<p class=\"subtitle\">" << escape_xml(report.subtitle) << "</p>";

  // The verdicts at a glance.
  out << "<table class=\"summary\"><tr><th>experiment</th><th>claim</th><th>verdict</th>"
      << "<th>deciding figure</th></tr>";
  for (const auto& e : report.experiments)
    out << "<tr><td><a href=\"#" << escape_xml(e.name) << "\">" << escape_xml(e.title)
        << "</a></td><td>" << escape_xml(e.claim) << "</td><td>" << badge(e.verdict.verdict)
        << "</td><td>" << escape_xml(e.verdict.reason) << "</td></tr>";
  out << "</table>\n";

  for (const auto& e : report.experiments) {
    out << "<section id=\"" << escape_xml(e.name) << "\"><h2>" << escape_xml(e.title) << "</h2>";
    out << "<p class=\"claim\"><b>Claim.</b> " << escape_xml(e.claim) << "</p>";
    if (!e.setup.empty())
      out << "<p class=\"setup\"><b>How it was measured.</b> " << escape_xml(e.setup) << "</p>";
    out << "<p class=\"verdict-line\"><b>Verdict:</b> " << badge(e.verdict.verdict) << " "
        << escape_xml(e.verdict.reason) << "</p>";
    if (!e.charts.empty()) {
      out << "<div class=\"charts\">";
      for (const auto& c : e.charts) {
        out << "<figure>" << c.svg;
        if (!c.caption.empty()) out << "<figcaption>" << escape_xml(c.caption) << "</figcaption>";
        out << "</figure>";
      }
      out << "</div>";
    }
    write_table(out, e.table);
    if (!e.notes.empty()) {
      out << "<ul class=\"notes\">";
      for (const auto& n : e.notes) out << "<li>" << escape_xml(n) << "</li>";
      out << "</ul>";
    }
    out << "</section>\n";
  }
  out << "<p class=\"footer\">Written by <code>bnlab benefits</code>. Numbers: results.json and "
         "one CSV per experiment beside this file.</p>";
  out << "</body></html>\n";
  return out.str();
}

nlohmann::json report_json(const Report& report) {
  nlohmann::json j;
  j["title"] = report.title;
  j["settings"] = report.settings.is_null() ? nlohmann::json::object() : report.settings;
  size_t charts = 0;
  nlohmann::json experiments = nlohmann::json::array();
  for (const auto& e : report.experiments) {
    charts += e.charts.size();
    experiments.push_back({{"name", e.name},
                           {"title", e.title},
                           {"claim", e.claim},
                           {"verdict", verdict_name(e.verdict.verdict)},
                           {"reason", e.verdict.reason},
                           {"charts", e.charts.size()},
                           {"seconds", e.seconds},
                           {"notes", e.notes},
                           {"results", e.results.is_null() ? nlohmann::json::object() : e.results}});
  }
  j["charts"] = charts;
  j["experiments"] = experiments;
  return j;
}

std::string write_report(const Report& report, const std::string& dir) {
  make_folder(dir);
  std::string base = dir.back() == '/' ? dir : dir + "/";
  for (const auto& e : report.experiments)
    io::write_file_atomic(base + e.name + ".csv", e.csv.empty() ? table_csv(e.table) : e.csv);
  // NaN is not JSON: nlohmann writes it as null, which is what a reader expects for "diverged".
  io::write_file_atomic(base + "results.json", report_json(report).dump(2) + "\n");
  std::string html_path = base + "report.html";
  io::write_file_atomic(html_path, report_html(report));
  return html_path;
}

}  // namespace bnlab::lab
