// A training step allocates no buffer once the shapes are known: every C++
// allocation in this test binary goes through the counting operator new
// below, and steps after the first two must not allocate anything of
// kBufferBytes or more (a tensor, a workspace). Smaller allocations (a Shape
// vector built by a module's output_shape) are counted and printed: today
// the layers make 9 per step, a few nanoseconds each.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "bnlab/nn/layers.hpp"
#include "bnlab/random.hpp"
#include "bnlab/train/trainer.hpp"

namespace {
constexpr std::size_t kBufferBytes = 256;
std::atomic<long> g_buffer_allocations{0}, g_small_allocations{0};
}  // namespace

void* operator new(std::size_t size) {
  (size >= kBufferBytes ? g_buffer_allocations : g_small_allocations)
      .fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size ? size : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t size) { return operator new(size); }
// The nothrow forms too (std::stable_sort's buffer), so every delete below frees a malloc.
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  (size >= kBufferBytes ? g_buffer_allocations : g_small_allocations)
      .fetch_add(1, std::memory_order_relaxed);
  return std::malloc(size ? size : 1);
}
void* operator new[](std::size_t size, const std::nothrow_t& tag) noexcept {
  return operator new(size, tag);
}
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

namespace bnlab {
namespace {

TEST(TrainerStep, AllocatesNoBufferOnceShapesAreKnown) {
  // Flatten, Linear(12, 16, bias=False), BatchNorm1d(16), ReLU, Linear(16, 4):
  // the tutorial's layer pattern at toy size.
  Generator gen(0);
  nn::Sequential net;
  net.add(std::make_unique<nn::Flatten>());
  net.add(std::make_unique<nn::Linear>(12, 16, false, gen));
  net.add(std::make_unique<nn::BatchNorm>(1, 16));
  net.add(std::make_unique<nn::ReLU>());
  net.add(std::make_unique<nn::Linear>(16, 4, true, gen));
  net.fuse_batch_norm_relu();

  constexpr int64_t kBatch = 8;
  std::vector<float> images(kBatch * 12);
  std::vector<int32_t> labels(kBatch);
  for (size_t i = 0; i < images.size(); ++i) images[i] = static_cast<float>(gen.uniform());
  for (size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<int32_t>(i % 4);

  for (const char* optimizer : {"sgd", "adam", "adamw"}) {
    train::TrainOptions options;
    options.optimizer = optimizer;
    options.momentum = optimizer[0] == 's' ? 0.9 : 0.0;
    if (std::string(optimizer) == "adamw") {  // and the other per-step extras
      options.clip_grad_norm = 0.5;
      options.label_smoothing = 0.1;
      options.lr_schedule = "onecycle";
      options.epochs = 1;
    }
    train::Trainer trainer(net, options);
    trainer.step(images.data(), labels.data(), kBatch);  // sizes every buffer
    trainer.step(images.data(), labels.data(), kBatch);  // momentum buffers, if any, exist now
    const long buffers_before = g_buffer_allocations.load();
    const long small_before = g_small_allocations.load();
    for (int i = 0; i < 5; ++i) trainer.step(images.data(), labels.data(), kBatch);
    EXPECT_EQ(g_buffer_allocations.load() - buffers_before, 0)
        << "buffer allocations in 5 " << optimizer << " steps";
    std::printf("%s: %ld allocations under %zu bytes in 5 steps\n", optimizer,
                g_small_allocations.load() - small_before, kBufferBytes);
  }
}

}  // namespace
}  // namespace bnlab
