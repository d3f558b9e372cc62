// Which inner loops the kernels run: the best vector variant this CPU runs,
// or one a test or benchmark names (batch_norm_kernel_variant and friends).
#include <atomic>
#include <string>

#include "bnlab/batch_norm.hpp"
#include "bnlab/error.hpp"
#include "kernels/batch_norm_walks.hpp"

namespace bnlab {
namespace kernels {
namespace {

std::atomic<const BatchNormLoops*> g_loops{nullptr};

const BatchNormLoops* best_loops() {
  return simd_variant_count() > 0 ? simd_loops(0) : plain_loops();
}

}  // namespace

const BatchNormLoops& loops() {
  const BatchNormLoops* l = g_loops.load(std::memory_order_acquire);
  if (l == nullptr) {
    l = best_loops();
    g_loops.store(l, std::memory_order_release);
  }
  return *l;
}

}  // namespace kernels

std::string batch_norm_kernel_variant() { return kernels::loops().name; }

std::string batch_norm_kernel_variants() {
  std::string out = "auto";
  for (int i = 0; i < kernels::simd_variant_count(); ++i)
    out += std::string(",") + kernels::simd_loops(i)->name;
  return out + ",plain";
}

void set_batch_norm_kernel_variant(const std::string& name) {
  using namespace kernels;
  if (name == "auto") {
    g_loops.store(best_loops());
    return;
  }
  if (name == "plain") {
    g_loops.store(plain_loops());
    return;
  }
  for (int i = 0; i < simd_variant_count(); ++i)
    if (name == simd_loops(i)->name) {
      g_loops.store(simd_loops(i));
      return;
    }
  throw Error("unknown kernel variant '" + name +
              "'; this CPU runs: " + batch_norm_kernel_variants());
}

}  // namespace bnlab
