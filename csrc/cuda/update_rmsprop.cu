// The rmsprop update for float16, bfloat16, float32 and float64, plain and with (Nesterov)
// momentum. One rule per file so that a parallel build compiles the rules side by side.
#include "update_kernel.cuh"

namespace fusedupdates::cuda {
FU_INSTANTIATE_UPDATE(Rmsprop)
}  // namespace fusedupdates::cuda
