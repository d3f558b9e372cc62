// Measurements that move the weights and put them back, on one batch: the
// internal covariate shift of Santurkar et al. (2018), Definition 2.1, and
// the loss landscape along the gradient (their Figure 4). Each leaves the
// weights, the gradients (zero) and BN's running statistics as training
// expects them, so probing never changes training.
#pragma once

#include <cstdint>
#include <vector>

#include "bnlab/nn/layers.hpp"

namespace bnlab::lab {

// One Linear layer's gradient before and after the layers below it moved.
struct LayerShift {
  double difference_norm;  // ||G - G'||
  double cosine;           // cos(G, G'); NaN when either is zero
  double gradient_norm;    // ||G||
};

/* For each Linear layer i after the first, on the batch (x, y): G = the
   gradient of its weight; G' = the same gradient after every child before
   it took the plain SGD step w -= lr * grad (the layers after it keep their
   weights, the batch is the same). In network order. */
std::vector<LayerShift> gradient_shift(nn::Sequential& net, const Tensor& x, const int32_t* y,
                                       double lr);

// The landscape along the gradient g at w, over the step sizes eta.
struct LandscapeSample {
  double loss_variation;           // max - min of L(w - eta g) over eta
  double gradient_predictiveness;  // max ||g - grad L(w - eta g)||
  double beta_smoothness;          // max ||g - grad L(w - eta g)|| / ||eta g||
};

// Inf where a step made the loss non-finite.
LandscapeSample landscape_along_gradient(nn::Sequential& net, const Tensor& x, const int32_t* y,
                                         const std::vector<double>& etas);

}  // namespace bnlab::lab
