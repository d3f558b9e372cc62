// A C++ program built against an installed bnlab through find_package: a
// network from PyTorch's text through the toolkit (bnlab::nn), and one call
// of the kernels' C++ API (bnlab::bnlab).
#include <bnlab/batch_norm.hpp>
#include <bnlab/nn/arch.hpp>
#include <bnlab/random.hpp>
#include <bnlab/tensor.hpp>

#include <cmath>
#include <cstdio>

int main() {
  bnlab::Generator gen(0);
  auto net = bnlab::nn::parse_arch("Linear(4, 3, bias=False), BatchNorm1d(3), ReLU()", gen);
  bnlab::Tensor x({8, 4});
  for (int64_t i = 0; i < x.numel(); ++i) x.data()[i] = float(i % 5) - 2.0f;
  const bnlab::Tensor& y = net->forward(x);
  if (y.size(0) != 8 || y.size(1) != 3) {
    std::fprintf(stderr, "unexpected output shape\n");
    return 1;
  }

  const float values[4] = {1.0f, 2.0f, 3.0f, 4.0f};
  float out[4];
  bnlab::batch_norm_forward_training(values, {2, 1, 2, bnlab::Layout::channels_first}, nullptr,
                                     nullptr, {}, 1e-5, out, nullptr, nullptr);
  if (std::fabs(out[0] - (1.0 - 2.5) / std::sqrt(1.25 + 1e-5)) > 1e-6) {
    std::fprintf(stderr, "y[0] = %g\n", out[0]);
    return 1;
  }
  std::printf("ok\n");
  return 0;
}
