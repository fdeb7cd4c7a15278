// Lasagne's norm-constraint multiplier: min(n, max_norm) / (epsilon + n). It is slightly
// below 1 even when n < max_norm; that is Lasagne's definition, kept on purpose.
#pragma once
#include "common.h"

namespace fusedupdates {

// The epsilon of Lasagne's total_norm_constraint, used by step(grads, max_norm=...).
constexpr double kClipEpsilon = 1e-7;

FU_HD double norm_multiplier(double norm, double max_norm, double epsilon) {
  const double target = norm < max_norm ? norm : max_norm;
  return target / (epsilon + norm);
}

}  // namespace fusedupdates
