// The kernels of one instruction set that norm_kernels.cpp defines and kernels.cpp puts in
// the KernelTable (both files are compiled once per instruction set, in FU_ISA_NS).
#pragma once
#include <cstdint>

#include "step_plan.h"

namespace fusedupdates::cpu::FU_ISA_NS {

double plan_sum_squares(const StepPlan& plan, int num_threads);
double list_sum_squares(const ArrayList& list, int num_threads);
void list_scale(const ArrayList& list, double factor, int num_threads);
void norm_constraint(DType dtype, const void* x, void* out, int64_t outer, int64_t reduce,
                     int64_t inner, double max_norm, double epsilon, int num_threads);

}  // namespace fusedupdates::cpu::FU_ISA_NS
