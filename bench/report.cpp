// The benchmark's table and JSON.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "bench.hpp"
#include "bnlab/error.hpp"

namespace bnlab::bench {
namespace {

std::string format(const char* fmt, double value) {
  char text[64];
  std::snprintf(text, sizeof text, fmt, value);
  return text;
}

// "12.3" ms, or the dash of an absent figure.
std::string ms_or_dash(const PeerTime& peer) {
  return peer.timing ? format("%.3f", peer.timing->median_ms) : "-";
}

// The peer's time over bnlab's: above 1, bnlab is faster.
std::string ratio_or_dash(const PeerTime& peer, const Timing& bnlab) {
  return peer.timing && bnlab.median_ms > 0 ? format("%.2f", peer.timing->median_ms / bnlab.median_ms)
                                            : "-";
}

nlohmann::json timing_json(const Timing& t) {
  return {{"median_ms", t.median_ms}, {"min_ms", t.min_ms}, {"reps", t.reps}};
}

nlohmann::json peer_json(const PeerTime& peer, const Timing& bnlab) {
  nlohmann::json j = nlohmann::json::object();
  if (peer.timing) {
    j = timing_json(*peer.timing);
    j["ratio_to_bnlab"] = bnlab.median_ms > 0 ? peer.timing->median_ms / bnlab.median_ms : 0.0;
  } else {
    j["median_ms"] = nullptr;
  }
  if (peer.max_abs_diff_vs_bnlab) j["max_abs_diff_vs_bnlab"] = *peer.max_abs_diff_vs_bnlab;
  if (!peer.note.empty()) j["note"] = peer.note;
  return j;
}

nlohmann::json status_json(const PeerStatus& s) {
  nlohmann::json j = {{"ran", s.ran}, {"version", s.version}};
  if (!s.note.empty()) j["note"] = s.note;
  return j;
}

}  // namespace

std::string format_table(const Report& report) {
  std::string out;
  char line[512];
  const double copy = report.bandwidth.copy_gbs;
  const MachineInfo& m = report.machine;
  std::string features;
  for (const std::string& f : m.features) features += (features.empty() ? "" : " ") + f;
  char sharing[128] = "";  // how the LLC share came from the instance, where it differs
  if (m.llc_instance_bytes > 0 && m.llc_instance_bytes != m.llc_bytes)
    std::snprintf(sharing, sizeof sharing, ", the share of %d CPUs of %.0f MiB shared by %d",
                  m.process_cpus, m.llc_instance_bytes / 1048576.0, m.llc_sharing_cpus);
  std::snprintf(line, sizeof line,
                "cpu: L1d %.0f KiB, L2 %.0f KiB, LLC %.0f MiB (%s%s); ISA: %s; Highway target %s\n",
                m.l1d_bytes / 1024.0, m.l2_bytes / 1024.0, m.llc_bytes / 1048576.0,
                m.cache_source.c_str(), sharing,
                features.empty() ? "none of interest" : features.c_str(), m.highway_target.c_str());
  out += line;
  std::snprintf(line, sizeof line,
                "machine: %s, %d cores online, LLC %.0f MiB; %d threads; bnlab kernels: %s\n"
                "bandwidth: copy %.1f GB/s (read+write; %.1f at the start, %.1f at the end), "
                "memcpy %.1f GB/s, read %.1f GB/s, %.0f MiB buffers, median of %d\n",
                report.machine.cpu_model.c_str(), report.machine.cores_online,
                report.machine.llc_bytes / 1048576.0, report.threads, report.kernel_variant.c_str(),
                copy, report.copy_gbs_start, report.copy_gbs_end, report.bandwidth.memcpy_gbs,
                report.bandwidth.read_gbs, report.bandwidth.buffer_bytes / 1048576.0,
                report.bandwidth.reps);
  out += line;
  std::snprintf(line, sizeof line, "load average (1 min): %.2f at the start, %.2f at the end%s\n",
                report.load_before, report.load_after,
                std::max(report.load_before, report.load_after) > report.machine.cores_online
                    ? " (busier than the cores: timings are noisy)"
                    : "");
  out += line;
  for (const auto* peer : {&report.onednn, &report.pytorch}) {
    const char* name = peer == &report.onednn ? "oneDNN" : "PyTorch";
    const std::string text = peer->ran ? peer->version + (peer->note.empty() ? "" : ", " + peer->note)
                                       : "skipped (" + peer->note + ")";
    std::snprintf(line, sizeof line, "%s: %s\n", name, text.c_str());
    out += line;
  }
  out += "ms: median; GB/s: passes * numel * 4 bytes (2 for bf16) / time; peer x: peer ms / bnlab ms "
         "(above 1: bnlab faster); * : tensor larger than the LLC; @16: x, dy and the output "
         "16-byte aligned (else 64)\n\n";
  std::snprintf(line, sizeof line, "%-16s %-14s %-22s %8s %9s %7s %6s %9s %6s %9s %6s\n", "shape",
                "layout", "op", "MiB", "bnlab ms", "GB/s", "%copy", "oneDNN", "x", "PyTorch", "x");
  out += line;
  for (const CaseResult& r : report.results) {
    const Case& c = r.the_case;
    const double gbs = effective_gbs(op_passes(c.op), c.tensor_bytes(), r.bnlab.median_ms);
    const bool beyond_llc = report.machine.llc_bytes > 0 && c.tensor_bytes() > report.machine.llc_bytes;
    std::string shape = c.dims_string();
    if (c.align_bytes < 64) {  // appended piece by piece (g++ 12's -Wrestrict false positive)
      shape += '@';
      shape += std::to_string(c.align_bytes);
    }
    std::snprintf(line, sizeof line, "%-16s %-14s %-22s %7.1f%s %9.3f %7.1f %5.0f%% %9s %6s %9s %6s\n",
                  shape.c_str(), layout_name(c.layout), op_name(c.op),
                  c.tensor_bytes() / 1048576.0, beyond_llc ? "*" : " ", r.bnlab.median_ms, gbs,
                  copy > 0 ? 100.0 * gbs / copy : 0.0, ms_or_dash(r.onednn).c_str(),
                  ratio_or_dash(r.onednn, r.bnlab).c_str(), ms_or_dash(r.pytorch).c_str(),
                  ratio_or_dash(r.pytorch, r.bnlab).c_str());
    out += line;
  }
  if (!report.rooflines.empty()) {
    const Roofline& first = report.rooflines.front();
    std::string dims;
    for (int64_t d : first.dims) {  // piece by piece (g++ 12's -Wrestrict false positive)
      if (!dims.empty()) dims += 'x';
      dims += std::to_string(d);
    }
    out += "\nwalk rooflines on " + dims +
           " (fp32; bf16_ walks move 2-byte elements): the passes a walk forces and nothing "
           "more; GB/s counts 2 passes forward, 3 backward, as the GroupNorm rows do\n";
    std::snprintf(line, sizeof line, "%-22s %9s %7s %6s  %s\n", "walk", "ms", "GB/s", "%copy",
                  "the rows that walk this way");
    out += line;
    for (const Roofline& r : report.rooflines) {
      const double gbs = effective_gbs(r.passes, r.tensor_bytes, r.timing.median_ms);
      std::snprintf(line, sizeof line, "%-22s %9.3f %7.1f %5.0f%%  %s\n", r.walk.c_str(),
                    r.timing.median_ms, gbs, copy > 0 ? 100.0 * gbs / copy : 0.0, r.models.c_str());
      out += line;
    }
  }
  // The split kernels' overhead: their time over the fused call's, case by case.
  bool first_split = true;
  for (const CaseResult& split : report.results) {
    if (!is_split(split.the_case.op)) continue;
    Case fused = split.the_case;
    fused.op = fused_op(split.the_case.op);
    for (const CaseResult& r : report.results) {
      if (r.the_case.id() != fused.id() || !(r.bnlab.median_ms > 0)) continue;
      std::snprintf(line, sizeof line, "%s%s over %s: %.2fx\n", first_split ? "\n" : "",
                    split.the_case.id().c_str(), op_name(fused.op),
                    split.bnlab.median_ms / r.bnlab.median_ms);
      out += line;
      first_split = false;
    }
  }
  return out;
}

std::string report_json(const Report& report) {
  nlohmann::json j;
  j["command"] = report.command;
  j["machine"] = {{"cpu_model", report.machine.cpu_model},
                  {"cores_online", report.machine.cores_online},
                  {"llc_bytes", report.machine.llc_bytes},
                  {"llc_instance_bytes", report.machine.llc_instance_bytes},
                  {"llc_sharing_cpus", report.machine.llc_sharing_cpus},
                  {"process_cpus", report.machine.process_cpus},
                  {"l1d_bytes", report.machine.l1d_bytes},
                  {"l2_bytes", report.machine.l2_bytes},
                  {"cache_source", report.machine.cache_source},
                  {"isa_features", report.machine.features},
                  {"highway_target", report.machine.highway_target}};
  j["threads"] = report.threads;
  j["load_average"] = {{"start", report.load_before}, {"end", report.load_after}};
  j["bnlab_kernel_variant"] = report.kernel_variant;
  j["bandwidth"] = {{"copy_gbs", report.bandwidth.copy_gbs},
                    {"memcpy_gbs", report.bandwidth.memcpy_gbs},
                    {"read_gbs", report.bandwidth.read_gbs},
                    {"copy_gbs_best", report.bandwidth.copy_gbs_best},
                    {"read_gbs_best", report.bandwidth.read_gbs_best},
                    {"copy_gbs_start", report.copy_gbs_start},
                    {"copy_gbs_end", report.copy_gbs_end},
                    {"buffer_bytes", report.bandwidth.buffer_bytes},
                    {"reps", report.bandwidth.reps}};
  j["peers"] = {{"onednn", status_json(report.onednn)}, {"pytorch", status_json(report.pytorch)}};
  j["results"] = nlohmann::json::array();
  for (const CaseResult& r : report.results) {
    const Case& c = r.the_case;
    const double gbs = effective_gbs(op_passes(c.op), c.tensor_bytes(), r.bnlab.median_ms);
    nlohmann::json bnlab = timing_json(r.bnlab);
    bnlab["effective_gbs"] = gbs;
    bnlab["share_of_copy_bandwidth"] =
        report.bandwidth.copy_gbs > 0 ? gbs / report.bandwidth.copy_gbs : 0.0;
    j["results"].push_back({{"id", c.id()},
                            {"dims", c.dims},
                            {"layout", layout_name(c.layout)},
                            {"op", op_name(c.op)},
                            {"passes", op_passes(c.op)},
                            {"tensor_bytes", c.tensor_bytes()},
                            {"bnlab", bnlab},
                            {"onednn", peer_json(r.onednn, r.bnlab)},
                            {"pytorch", peer_json(r.pytorch, r.bnlab)}});
  }
  j["rooflines"] = nlohmann::json::array();
  for (const Roofline& r : report.rooflines) {
    const double gbs = effective_gbs(r.passes, r.tensor_bytes, r.timing.median_ms);
    nlohmann::json t = timing_json(r.timing);
    t["effective_gbs"] = gbs;
    t["share_of_copy_bandwidth"] =
        report.bandwidth.copy_gbs > 0 ? gbs / report.bandwidth.copy_gbs : 0.0;
    j["rooflines"].push_back({{"walk", r.walk},
                              {"models", r.models},
                              {"dims", r.dims},
                              {"passes", r.passes},
                              {"tensor_bytes", r.tensor_bytes},
                              {"timing", t}});
  }
  return j.dump(2) + "\n";
}

void check_report_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(ErrorCode::io, "--check-json: cannot open " + path);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    throw Error(ErrorCode::io, "--check-json: " + path + " is not JSON: " + e.what());
  }
  for (const char* key : {"machine", "threads", "bandwidth", "peers", "results"})
    if (!j.contains(key)) throw Error(ErrorCode::io, "--check-json: " + path + " has no \"" + key + "\"");
  for (const char* key : {"cpu_model", "llc_bytes", "l1d_bytes", "l2_bytes", "isa_features",
                          "highway_target"})
    if (!j["machine"].contains(key))
      throw Error(ErrorCode::io, "--check-json: " + path + ": \"machine\" has no \"" + key + "\"");
  if (!j["results"].is_array() || j["results"].empty())
    throw Error(ErrorCode::io, "--check-json: " + path + ": \"results\" is not a non-empty array");
  for (const auto& r : j["results"])
    for (const char* key : {"id", "dims", "layout", "op", "passes", "bnlab", "onednn", "pytorch"})
      if (!r.contains(key))
        throw Error(ErrorCode::io, "--check-json: " + path + ": a result has no \"" + key + "\"");
  if (j.contains("rooflines")) {  // reports before the rooflines have none
    if (!j["rooflines"].is_array())
      throw Error(ErrorCode::io, "--check-json: " + path + ": \"rooflines\" is not an array");
    for (const auto& r : j["rooflines"])
      for (const char* key : {"walk", "dims", "passes", "tensor_bytes", "timing"})
        if (!r.contains(key))
          throw Error(ErrorCode::io,
                      "--check-json: " + path + ": a roofline has no \"" + key + "\"");
  }
}

}  // namespace bnlab::bench
