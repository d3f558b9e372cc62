/* A C program built against an installed bnlab through pkg-config: one
 * training forward through the C API, checked against the formula. */
#include <bnlab/bnlab.h>
#include <math.h>
#include <stdio.h>

int main(void) {
  /* (N=2, C=1, S=2): the channel's four values have mean 2.5, variance 1.25. */
  const float x[4] = {1.0f, 2.0f, 3.0f, 4.0f};
  float y[4];
  const bnlab_status status = bnlab_batch_norm_forward_training(
      x, 2, 1, 2, BNLAB_CHANNELS_FIRST, NULL, NULL, NULL, NULL, 0.1, 1, 1e-5, y, NULL, NULL);
  if (status != BNLAB_OK) {
    fprintf(stderr, "forward failed: %s\n", bnlab_last_error());
    return 1;
  }
  for (int i = 0; i < 4; ++i) {
    const double want = (x[i] - 2.5) / sqrt(1.25 + 1e-5);
    if (fabs(y[i] - want) > 1e-6) {
      fprintf(stderr, "y[%d] = %g, want %g\n", i, y[i], want);
      return 1;
    }
  }
  printf("ok\n");
  return 0;
}
