// The kernels of one instruction set that norm_kernels.cpp and compact_kernels.cpp define and
// kernels.cpp puts in the KernelTable (both files are compiled once per instruction set, in
// FU_ISA_NS).
#pragma once
#include <cstdint>

#include "step_plan.h"

namespace fusedupdates::cpu {
inline namespace FU_ISA_NS {  // as in storage.h: the first declaration decides

// compact_kernels.cpp: a plan whose state_format is kBFloat16 or kInt8.
void apply_step_compact(const StepPlan& plan, int num_threads);
void quantize(const float* x, uint8_t* codes, float* absmax, int64_t n, bool is_signed,
              int num_threads, const StateRoundingStream* stochastic);
void dequantize(const uint8_t* codes, const float* absmax, float* x, int64_t n, bool is_signed,
                int num_threads);

double plan_sum_squares(const StepPlan& plan, int num_threads);
bool plan_all_finite(const StepPlan& plan, int num_threads);
double list_sum_squares(const ArrayList& list, int num_threads);
void list_scale(const ArrayList& list, double factor, int num_threads);
void norm_constraint(DType dtype, const void* x, void* out, int64_t outer, int64_t reduce,
                     int64_t inner, double max_norm, double epsilon, int num_threads);

}  // namespace FU_ISA_NS
}  // namespace fusedupdates::cpu
