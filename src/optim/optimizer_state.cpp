// The optimizers' state export and restore, for resumable checkpoints: SGD's
// momentum buffers, Adam's moments and step count, under PyTorch's names.
#include <map>
#include <set>

#include "bnlab/error.hpp"
#include "bnlab/optim/optimizer.hpp"

namespace bnlab::optim {
namespace {

// The tensors of `state` by name, each checked against the parameter it
// belongs to: `suffixes` per parameter, all of them or none. Returns whether
// they are there.
bool check_state_tensors(const char* optimizer,
                         const std::vector<std::pair<std::string, nn::Parameter*>>& params,
                         const std::vector<std::string>& suffixes, const OptimizerState& state,
                         std::map<std::string, const Tensor*>& found) {
  std::map<std::string, const nn::Parameter*> expected;
  for (const auto& [name, param] : params)
    for (const std::string& suffix : suffixes) expected[name + "." + suffix] = param;
  for (const auto& [name, tensor] : state.tensors) {
    const auto it = expected.find(name);
    if (it == expected.end())
      throw Error(std::string(optimizer) + " state: unexpected entry '" + name + "'");
    if (tensor.shape() != it->second->value.shape())
      throw Error(std::string(optimizer) + " state '" + name + "': shape " +
                  shape_string(tensor.shape()) + ", the parameter has " +
                  shape_string(it->second->value.shape()));
    if (!found.emplace(name, &tensor).second)
      throw Error(std::string(optimizer) + " state: '" + name + "' appears twice");
  }
  if (found.empty()) return false;
  for (const auto& [name, param] : expected)
    if (!found.count(name)) throw Error(std::string(optimizer) + " state: missing '" + name + "'");
  return true;
}

void reject_counters(const char* optimizer, const OptimizerState& state,
                     const std::set<std::string>& known) {
  for (const auto& [name, value] : state.counters)
    if (!known.count(name))
      throw Error(std::string(optimizer) + " state: unexpected counter '" + name + "'");
}

}  // namespace

OptimizerState Optimizer::state() const { return {}; }

void Optimizer::load_state(const OptimizerState& state) {
  if (!state.tensors.empty() || !state.counters.empty())
    throw Error("this optimizer keeps no state, the checkpoint has some");
}

// torch.optim.SGD keeps state[p]["momentum_buffer"] once a step with momentum ran.
OptimizerState SGD::state() const {
  OptimizerState state;
  if (momentum == 0.0 || first_) return state;
  for (size_t i = 0; i < params_.size(); ++i)
    state.tensors.emplace_back(params_[i].first + ".momentum_buffer", momentum_buffers_[i]);
  return state;
}

void SGD::load_state(const OptimizerState& state) {
  reject_counters("SGD", state, {});
  std::map<std::string, const Tensor*> found;
  if (!check_state_tensors("SGD", params_, {"momentum_buffer"}, state, found)) {
    first_ = true;
    return;
  }
  for (size_t i = 0; i < params_.size(); ++i)
    momentum_buffers_[i] = *found.at(params_[i].first + ".momentum_buffer");
  first_ = false;
}

// torch.optim.Adam keeps state[p]["step"], ["exp_avg"] and ["exp_avg_sq"].
OptimizerState Adam::state() const {
  OptimizerState state;
  state.counters.emplace_back("step", t_);
  if (t_ == 0) return state;
  for (size_t i = 0; i < params_.size(); ++i) {
    state.tensors.emplace_back(params_[i].first + ".exp_avg", m_[i]);
    state.tensors.emplace_back(params_[i].first + ".exp_avg_sq", v_[i]);
  }
  return state;
}

void Adam::load_state(const OptimizerState& state) {
  reject_counters("Adam", state, {"step"});
  int64_t step = 0;
  for (const auto& [name, value] : state.counters) step = value;
  if (step < 0) throw Error("Adam state: step must be >= 0, got " + std::to_string(step));
  std::map<std::string, const Tensor*> found;
  const bool moments =
      check_state_tensors("Adam", params_, {"exp_avg", "exp_avg_sq"}, state, found);
  if (moments != (step > 0))
    throw Error("Adam state: step " + std::to_string(step) + (moments ? " with" : " without") +
                " moments (exp_avg, exp_avg_sq)");
  for (size_t i = 0; moments && i < params_.size(); ++i) {
    m_[i] = *found.at(params_[i].first + ".exp_avg");
    v_[i] = *found.at(params_[i].first + ".exp_avg_sq");
  }
  t_ = step;
}

}  // namespace bnlab::optim
