// Picks the best kernel table the running CPU supports, once, and owns the thread count.
#pragma once
#include "step_plan.h"

namespace fusedupdates::cpu {

const KernelTable& kernels();  // the table in use (FUSEDUPDATES_SIMD may force a lower one)
int num_threads();
void set_num_threads(int n);
// The most threads set_num_threads accepts: 8 per processor (at least 64). libgomp aborts or
// crashes when asked for tens of thousands.
int max_threads();
bool openmp_enabled();

}  // namespace fusedupdates::cpu
