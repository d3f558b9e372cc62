/* The C API used from C: bnlab.h must compile as C99 and link against
 * libbnlab.so with nothing but the header. A training step, inference and a
 * backward on a (2, 3, 4) tensor in both layouts, checked against values
 * computed in double here, and an invalid layout value; exit status 0 when
 * everything holds. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "bnlab/bnlab.h"

enum { N = 2, C = 3, S = 4, COUNT = N * C * S };

static int64_t index_of(int64_t i, int64_t j, int64_t k, bnlab_layout layout) {
  return layout == BNLAB_CHANNELS_FIRST ? (i * C + j) * S + k : (i * S + k) * C + j;
}

/* An invalid layout (legal to pass in C, where an enum is an int) is refused by
 * every function with a message naming "layout". Returns the failures. */
static int check_invalid_layouts(void) {
  float x[COUNT] = {0}, y[COUNT], dx[COUNT], ones[C] = {1, 1, 1}, zeros[C] = {0};
  double mean[C], m2[C];
  const int bad_layouts[] = {3, -1};
  int failures = 0;
  for (int b = 0; b < 2; ++b) {
    const bnlab_layout layout = (bnlab_layout)bad_layouts[b];
    bnlab_status st[4];
    st[0] = bnlab_batch_norm_forward_training(x, N, C, S, layout, NULL, NULL, NULL, NULL, 0.1, 1,
                                              1e-5, y, NULL, NULL);
    const int named0 = strstr(bnlab_last_error(), "layout") != NULL;
    st[1] =
        bnlab_batch_norm_forward_inference(x, N, C, S, layout, NULL, NULL, zeros, ones, 1e-5, y);
    const int named1 = strstr(bnlab_last_error(), "layout") != NULL;
    st[2] = bnlab_batch_norm_backward(x, x, N, C, S, layout, NULL, zeros, ones, dx, NULL, NULL);
    const int named2 = strstr(bnlab_last_error(), "layout") != NULL;
    st[3] = bnlab_batch_norm_stats(x, N, C, S, layout, mean, m2);
    const int named3 = strstr(bnlab_last_error(), "layout") != NULL;
    for (int k = 0; k < 4; ++k)
      if (st[k] != BNLAB_INVALID_ARGUMENT) {
        printf("layout %d, function %d: status %s\n", bad_layouts[b], k,
               bnlab_status_string(st[k]));
        ++failures;
      }
    if (!named0 || !named1 || !named2 || !named3) {
      printf("layout %d: a message does not name the layout\n", bad_layouts[b]);
      ++failures;
    }
  }
  return failures;
}

int main(void) {
  int failures = check_invalid_layouts();
  for (int l = 0; l < 2; ++l) {
    const bnlab_layout layout = l == 0 ? BNLAB_CHANNELS_FIRST : BNLAB_CHANNELS_LAST;
    float x[COUNT], y[COUNT], dx[COUNT], dy[COUNT], mean[C], invstd[C], rm[C], rv[C], dw[C], db[C];
    for (int e = 0; e < COUNT; ++e) {
      x[e] = (float)((e * 37 % 11) - 5) * 0.25f;
      dy[e] = (float)((e * 13 % 7) - 3) * 0.5f;
    }
    for (int j = 0; j < C; ++j) rm[j] = 0.0f, rv[j] = 1.0f;
    bnlab_status st = bnlab_batch_norm_forward_training(x, N, C, S, layout, NULL, NULL, rm, rv, 0.1,
                                                        1, 1e-5, y, mean, invstd);
    if (st != BNLAB_OK) {
      printf("training: %s: %s\n", bnlab_status_string(st), bnlab_last_error());
      return 1;
    }
    for (int j = 0; j < C; ++j) {
      double sum = 0.0, m2 = 0.0;
      for (int i = 0; i < N; ++i)
        for (int k = 0; k < S; ++k) sum += x[index_of(i, j, k, layout)];
      const double mu = sum / (N * S);
      for (int i = 0; i < N; ++i)
        for (int k = 0; k < S; ++k) {
          const double d = x[index_of(i, j, k, layout)] - mu;
          m2 += d * d;
        }
      const double inv = 1.0 / sqrt(m2 / (N * S) + 1e-5);
      for (int i = 0; i < N; ++i)
        for (int k = 0; k < S; ++k) {
          const int64_t at = index_of(i, j, k, layout);
          const double want = (x[at] - mu) * inv;
          if (fabs(y[at] - want) > 1e-5 * (1.0 + fabs(want))) ++failures;
        }
      if (fabs(rv[j] - (0.9 + 0.1 * m2 / (N * S - 1))) > 1e-5) ++failures;
    }
    st = bnlab_batch_norm_forward_inference(x, N, C, S, layout, NULL, NULL, rm, rv, 1e-5, y);
    if (st != BNLAB_OK) ++failures;
    st = bnlab_batch_norm_backward(x, dy, N, C, S, layout, NULL, mean, invstd, dx, dw, db);
    if (st != BNLAB_OK) ++failures;
    for (int j = 0; j < C; ++j) {
      double sum_dy = 0.0;
      for (int i = 0; i < N; ++i)
        for (int k = 0; k < S; ++k) sum_dy += dy[index_of(i, j, k, layout)];
      if (fabs(db[j] - sum_dy) > 1e-5 * (1.0 + fabs(sum_dy))) ++failures;
    }
    /* An error from C: the status and a message naming the argument. */
    st = bnlab_batch_norm_forward_training(NULL, N, C, S, layout, NULL, NULL, NULL, NULL, 0.1, 1,
                                           1e-5, y, NULL, NULL);
    if (st != BNLAB_INVALID_ARGUMENT || bnlab_last_error()[0] != 'x') ++failures;
  }
  bnlab_set_num_threads(1);
  bnlab_set_num_threads(0);
  printf("bnlab C API from C: %s (%d failures)\n", failures == 0 ? "ok" : "FAILED", failures);
  return failures == 0 ? 0 : 1;
}
