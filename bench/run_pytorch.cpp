// PyTorch as a peer: bench/peer_pytorch.py in a child process, the cases and the
// timing policy as one JSON argument, the results as JSON on its stdout. A
// missing interpreter, a missing torch or a failing script becomes a note.
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "bench.hpp"

namespace bnlab::bench {
namespace {

// Runs argv[0] with argv and `env` (KEY=VALUE) added to the environment,
// stderr inherited, and returns what it printed on stdout; `exit_code` gets its
// exit status (-1 when it did not exit normally).
std::string run_capturing_stdout(const std::vector<std::string>& argv,
                                 const std::vector<std::string>& env, int& exit_code) {
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    dup2(pipe_fds[1], STDOUT_FILENO);
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    for (const std::string& entry : env) {
      const size_t equals = entry.find('=');
      if (equals != std::string::npos)
        setenv(entry.substr(0, equals).c_str(), entry.substr(equals + 1).c_str(), 1);
    }
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(pipe_fds[1]);
  std::string output;
  char chunk[4096];
  for (ssize_t got; (got = read(pipe_fds[0], chunk, sizeof chunk)) != 0;) {
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) break;
    output.append(chunk, static_cast<size_t>(got));
  }
  close(pipe_fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return output;
}

}  // namespace

void run_pytorch(std::vector<CaseResult>& results, const TimingPolicy& policy,
                 const PytorchOptions& options, PeerStatus& status) {
  auto skip = [&](const std::string& why) {
    status.ran = false;
    status.note = why;
    for (CaseResult& r : results) r.pytorch.note = "skipped";
  };
  if (access(options.python.c_str(), X_OK) != 0) return skip(options.python + " not found");
  if (access(options.script.c_str(), R_OK) != 0) return skip(options.script + " not found");

  nlohmann::json request;
  request["threads"] = options.threads;
  request["warmup"] = policy.warmup;
  request["fixed_reps"] = policy.fixed_reps;
  request["min_reps"] = policy.min_reps;
  request["max_reps"] = policy.max_reps;
  request["budget_s"] = policy.budget_s;
  request["cases"] = nlohmann::json::array();
  for (const CaseResult& r : results) {
    if (r.the_case.layout == BenchLayout::blocked16) continue;  // no such layout in PyTorch
    if (r.the_case.align_bytes < 64) continue;                   // alignment rows: bnlab only
    request["cases"].push_back(
        {{"id", r.the_case.id()},
         {"dims", r.the_case.dims},
         {"layout", layout_name(r.the_case.layout)},
         {"op", op_name(fused_op(r.the_case.op))}});  // a split op's peer: the fused one
  }

  int exit_code = 0;
  std::string output;
  try {
    output = run_capturing_stdout({options.python, options.script, request.dump()}, options.env,
                                  exit_code);
  } catch (const std::exception& e) {
    return skip(std::string("could not start ") + options.python + ": " + e.what());
  }
  if (exit_code != 0)
    return skip(options.script + " exited with status " + std::to_string(exit_code));
  nlohmann::json reply;
  try {
    reply = nlohmann::json::parse(output);
  } catch (const std::exception& e) {
    return skip(options.script + " printed no JSON: " + e.what());
  }
  if (reply.contains("error")) return skip(reply["error"].get<std::string>());

  status.ran = true;
  status.version = "PyTorch " + reply.value("torch_version", std::string("?"));
  for (const std::string& entry : options.env) status.note += (status.note.empty() ? "env " : " ") + entry;
  std::map<std::string, const nlohmann::json*> by_id;
  for (const nlohmann::json& r : reply["results"]) by_id[r.at("id").get<std::string>()] = &r;
  for (CaseResult& r : results) {
    if (r.the_case.layout == BenchLayout::blocked16) {
      r.pytorch.note = "n/a: PyTorch has no nChw16c layout";
      continue;
    }
    if (r.the_case.align_bytes < 64) {
      r.pytorch.note = "n/a: an alignment row (bnlab against its own 64-byte row)";
      continue;
    }

    const auto found = by_id.find(r.the_case.id());
    if (found == by_id.end()) {
      r.pytorch.note = "no result";
      continue;
    }
    const nlohmann::json& j = *found->second;
    if (j.contains("error")) {
      r.pytorch.note = j["error"].get<std::string>();
      continue;
    }
    Timing t;
    t.median_ms = j.at("median_ms").get<double>();
    t.min_ms = j.at("min_ms").get<double>();
    t.reps = j.at("reps").get<int>();
    r.pytorch.timing = t;
    if (j.contains("note")) r.pytorch.note = j["note"].get<std::string>();
  }
}

}  // namespace bnlab::bench
