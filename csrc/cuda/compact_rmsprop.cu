// The rmsprop update with compact state (bfloat16 or int8) for float16, bfloat16 and float32
// params, plain and with (Nesterov) momentum. One rule per file, like update_rmsprop.cu.
#include "compact_kernel.cuh"

namespace fusedupdates::cuda {
FU_INSTANTIATE_COMPACT(Rmsprop)
}  // namespace fusedupdates::cuda
