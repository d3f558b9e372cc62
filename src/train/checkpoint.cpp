// Resumable checkpoints (include/bnlab/train/checkpoint.hpp): the state dict,
// the optimizer's tensors under "optimizer.", the run's position as JSON in
// __metadata__["bnlab_resume"].
#include "bnlab/train/checkpoint.hpp"

#include <cstring>
#include <nlohmann/json.hpp>

#include "bnlab/error.hpp"
#include "bnlab/nn/state_dict.hpp"

namespace bnlab::train {
namespace {

constexpr const char* kResumeKey = "bnlab_resume";
constexpr int kResumeVersion = 1;

io::NamedTensor float_entry(const std::string& name, const Tensor& tensor) {
  io::NamedTensor named;
  named.name = name;
  named.dtype = io::DType::F32;
  named.shape = tensor.shape();
  named.bytes.resize(static_cast<size_t>(tensor.numel()) * sizeof(float));
  if (!named.bytes.empty()) std::memcpy(named.bytes.data(), tensor.data(), named.bytes.size());
  return named;
}

io::NamedTensor counter_entry(const std::string& name, int64_t value) {
  io::NamedTensor named;
  named.name = name;
  named.dtype = io::DType::I64;  // shape []: a 0-dim torch.long, as PyTorch stores a step
  named.bytes.resize(sizeof value);
  std::memcpy(named.bytes.data(), &value, sizeof value);
  return named;
}

}  // namespace

void save_training_checkpoint(const std::string& path, nn::Sequential& net, const std::string& arch,
                              const optim::Optimizer& optimizer, const ResumeState& state) {
  io::SafetensorsFile file = nn::state_dict(net);
  file.metadata["arch"] = arch;
  const optim::OptimizerState optimizer_state = optimizer.state();
  for (const auto& [name, tensor] : optimizer_state.tensors)
    file.tensors.push_back(float_entry(nn::kOptimizerStatePrefix + name, tensor));
  for (const auto& [name, value] : optimizer_state.counters)
    file.tensors.push_back(counter_entry(nn::kOptimizerStatePrefix + name, value));

  nlohmann::json resume = {{"version", kResumeVersion},
                           {"epoch", state.epoch},
                           {"step", state.within.step},
                           {"loss_sum", state.within.loss_sum},
                           {"correct", state.within.correct},
                           {"seen", state.within.seen},
                           {"best_val_accuracy", state.best_val_accuracy},
                           {"settings", state.settings}};
  if (state.dropout_generator) {
    const GeneratorState& g = *state.dropout_generator;
    // JSON numbers: the words as exact integers, spare as a round-tripping double.
    resume["dropout_generator"] = {{"words", {g.words[0], g.words[1], g.words[2], g.words[3]}},
                                   {"has_spare", g.has_spare},
                                   {"spare", g.spare}};
  }
  file.metadata[kResumeKey] = resume.dump();
  io::write_safetensors(path, file);
}

bool is_resumable(const io::SafetensorsFile& file) { return file.metadata.count(kResumeKey) > 0; }

ResumeState read_resume_state(const io::SafetensorsFile& file, const std::string& path) {
  if (!is_resumable(file))
    throw Error(ErrorCode::io, path +
                                   " holds weights but no training state (it was not "
                                   "written by bnlab train --save): start from its weights "
                                   "with --init instead of --resume");
  ResumeState state;
  try {
    const nlohmann::json resume = nlohmann::json::parse(file.metadata.at(kResumeKey));
    if (resume.at("version").get<int>() != kResumeVersion)
      throw Error("training state version " + resume.at("version").dump() + ", expected " +
                  std::to_string(kResumeVersion));
    state.epoch = resume.at("epoch").get<int64_t>();
    state.within.step = resume.at("step").get<int64_t>();
    state.within.loss_sum = resume.at("loss_sum").get<double>();
    state.within.correct = resume.at("correct").get<int64_t>();
    state.within.seen = resume.at("seen").get<int64_t>();
    state.best_val_accuracy = resume.at("best_val_accuracy").get<double>();
    state.settings = resume.at("settings").get<std::map<std::string, std::string>>();
    if (resume.contains("dropout_generator")) {
      const nlohmann::json& g = resume.at("dropout_generator");
      GeneratorState generator;
      for (int i = 0; i < 4; ++i) generator.words[i] = g.at("words").at(i).get<uint64_t>();
      generator.has_spare = g.at("has_spare").get<bool>();
      generator.spare = g.at("spare").get<double>();
      state.dropout_generator = generator;
    }
    if (state.epoch < 0 || state.within.step < 0)
      throw Error("negative epoch or step in the training state");
  } catch (const nlohmann::json::exception& e) {
    throw Error(ErrorCode::io, path + ": __metadata__ " + kResumeKey +
                                   " is not bnlab's training "
                                   "state: " +
                                   e.what());
  } catch (const Error& e) {
    throw Error(ErrorCode::io, path + ": " + e.what());
  }
  return state;
}

void load_model_and_optimizer(const io::SafetensorsFile& file, const std::string& path,
                              nn::Sequential& net, optim::Optimizer& optimizer) {
  // The optimizer's entries, then the model (which skips them).
  optim::OptimizerState optimizer_state;
  const size_t prefix = std::strlen(nn::kOptimizerStatePrefix);
  for (const io::NamedTensor& named : file.tensors) {
    if (named.name.rfind(nn::kOptimizerStatePrefix, 0) != 0) continue;
    const std::string name = named.name.substr(prefix);
    if (named.dtype == io::DType::I64 && named.shape.empty()) {
      int64_t value = 0;
      std::memcpy(&value, named.bytes.data(), sizeof value);
      optimizer_state.counters.emplace_back(name, value);
    } else if (named.dtype == io::DType::F32) {
      Tensor tensor(named.shape);
      if (static_cast<size_t>(tensor.numel()) * sizeof(float) != named.bytes.size())
        throw Error(ErrorCode::io, path + ": '" + named.name + "' has " +
                                       std::to_string(named.bytes.size()) + " bytes for shape " +
                                       shape_string(named.shape));
      if (tensor.numel() > 0) std::memcpy(tensor.data(), named.bytes.data(), named.bytes.size());
      optimizer_state.tensors.emplace_back(name, std::move(tensor));
    } else {
      throw Error(ErrorCode::io, path + ": '" + named.name + "' is " + io::dtype_name(named.dtype) +
                                     ", expected F32 (or an I64 scalar counter)");
    }
  }
  nn::load_state_dict(net, file);
  try {
    optimizer.load_state(optimizer_state);
  } catch (const Error& e) {
    throw Error(ErrorCode::io, path + ": " + e.what());
  }
}

std::string settings_difference(const std::map<std::string, std::string>& saved,
                                const std::map<std::string, std::string>& now) {
  std::string text;
  const auto add = [&](const std::string& key, const std::string& before,
                       const std::string& after) {
    text +=
        (text.empty() ? "" : "; ") + key + ": " + before + " in the checkpoint, " + after + " now";
  };
  for (const auto& [key, value] : now) {
    const auto it = saved.find(key);
    if (it == saved.end())
      add(key, "none", value);
    else if (it->second != value)
      add(key, it->second, value);
  }
  for (const auto& [key, value] : saved)
    if (!now.count(key)) add(key, value, "none");
  return text;
}

}  // namespace bnlab::train
