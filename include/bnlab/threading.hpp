// The thread count every bnlab kernel uses (OpenMP underneath).
#pragma once

namespace bnlab {

// threads <= 0 restores the default: the number of cores OpenMP sees.
void set_num_threads(int threads);
int num_threads();

}  // namespace bnlab
