// adam, adamax, amsgrad: Lasagne's per-element math (docs/UPDATE_RULES.md).
// The bias corrections depend only on t, so they are folded into one step size per step,
// computed in double and then cast, exactly like Lasagne's scalar a_t.
#pragma once
#include "common.h"

namespace fusedupdates {

// max(a, b) with NumPy's np.maximum semantics, which the reference uses: a NaN in EITHER
// operand gives NaN (`a > b ? a : b` alone drops a NaN a, e.g. a NaN already in adamax's u or
// amsgrad's v_hat, and fmax drops both), and a tie returns b, as np.maximum does for -0 vs +0.
// Two compares and a select, no branch, so the CPU loops still vectorise.
template <typename T>
FU_HD T max_propagate_nan(T a, T b) {
  return (a > b || a != a) ? a : b;
}

// a_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t), shared by adam and amsgrad.
FU_HD double adam_step_size(const HyperParams& h) {
  return h.learning_rate * FU_MATH::sqrt(1.0 - FU_MATH::pow(h.beta2, h.step)) /
         (1.0 - FU_MATH::pow(h.beta1, h.step));
}

// The moment updates adam and amsgrad share:
// m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2
template <typename T>
struct AdamMoments {
  T b1, one_minus_b1, b2, one_minus_b2;
  FU_HD explicit AdamMoments(const HyperParams& h)
      : b1(T(h.beta1)),
        one_minus_b1(T(1.0 - h.beta1)),
        b2(T(h.beta2)),
        one_minus_b2(T(1.0 - h.beta2)) {}
  FU_HD void update(T g, T& m, T& v) const {
    m = b1 * m + one_minus_b1 * g;
    v = b2 * v + one_minus_b2 * (g * g);
  }
};

// moments as above;  p <- p - a_t m / (sqrt(v) + eps)
template <typename T>
struct Adam {
  using value_type = T;
  static constexpr int kNumStates = 2;
  static constexpr unsigned kSignedStates = 0b01;  // m; v >= 0
  AdamMoments<T> moments;
  T eps, step_size;
  FU_HD explicit Adam(const HyperParams& h)
      : moments(h), eps(T(h.epsilon)), step_size(T(adam_step_size(h))) {}
  FU_HD T operator()(T g, StateVec<T, 2>& s) const {
    moments.update(g, s[0], s[1]);
    return -(step_size * s[0] / (FU_MATH::sqrt(s[1]) + eps));
  }
};

// a_t = lr / (1 - b1^t);  m <- b1 m + (1-b1) g;  u <- max(b2 u, |g|);  p <- p - a_t m / (u + eps)
template <typename T>
struct Adamax {
  using value_type = T;
  static constexpr int kNumStates = 2;
  static constexpr unsigned kSignedStates = 0b01;  // m; u >= 0
  T b1, one_minus_b1, b2, eps, step_size;
  FU_HD explicit Adamax(const HyperParams& h)
      : b1(T(h.beta1)),
        one_minus_b1(T(1.0 - h.beta1)),
        b2(T(h.beta2)),
        eps(T(h.epsilon)),
        step_size(T(h.learning_rate / (1.0 - FU_MATH::pow(h.beta1, h.step)))) {}
  FU_HD T operator()(T g, StateVec<T, 2>& s) const {
    const T m = b1 * s[0] + one_minus_b1 * g;
    const T scaled_u = b2 * s[1];
    const T abs_g = FU_MATH::fabs(g);
    const T u = max_propagate_nan(scaled_u, abs_g);
    s[0] = m;
    s[1] = u;
    return -(step_size * m / (u + eps));
  }
};

// adam plus v_hat <- max(v_hat, v);  p <- p - a_t m / (sqrt(v_hat) + eps)
template <typename T>
struct Amsgrad {
  using value_type = T;
  static constexpr int kNumStates = 3;
  static constexpr unsigned kSignedStates = 0b001;  // m; v, v_hat >= 0
  AdamMoments<T> moments;
  T eps, step_size;
  FU_HD explicit Amsgrad(const HyperParams& h)
      : moments(h), eps(T(h.epsilon)), step_size(T(adam_step_size(h))) {}
  FU_HD T operator()(T g, StateVec<T, 3>& s) const {
    moments.update(g, s[0], s[1]);
    const T v_hat = max_propagate_nan(s[2], s[1]);
    s[2] = v_hat;
    return -(step_size * s[0] / (FU_MATH::sqrt(v_hat) + eps));
  }
};

}  // namespace fusedupdates
