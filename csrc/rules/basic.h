// sgd, adagrad, rmsprop, adadelta: Lasagne's per-element math (docs/UPDATE_RULES.md).
// Each operator() returns delta such that p_new = p + delta, and updates its state.
#pragma once
#include "common.h"

namespace fusedupdates {

template <typename T>
struct Sgd {
  using value_type = T;
  static constexpr int kNumStates = 0;
  static constexpr unsigned kSignedStates = 0;
  T lr;
  FU_HD explicit Sgd(const HyperParams& h) : lr(T(h.learning_rate)) {}
  FU_HD T operator()(T g, StateVec<T, 0>&) const { return -(lr * g); }
};

// a <- a + g^2;  p <- p - lr * g / sqrt(a + eps)   (epsilon INSIDE the root)
template <typename T>
struct Adagrad {
  using value_type = T;
  static constexpr int kNumStates = 1;
  static constexpr unsigned kSignedStates = 0;  // accu >= 0
  T lr, eps;
  FU_HD explicit Adagrad(const HyperParams& h) : lr(T(h.learning_rate)), eps(T(h.epsilon)) {}
  FU_HD T operator()(T g, StateVec<T, 1>& s) const {
    const T a = s[0] + g * g;
    s[0] = a;
    return -(lr * g / FU_MATH::sqrt(a + eps));
  }
};

// a <- rho * a + (1 - rho) * g^2;  p <- p - lr * g / sqrt(a + eps)
template <typename T>
struct Rmsprop {
  using value_type = T;
  static constexpr int kNumStates = 1;
  static constexpr unsigned kSignedStates = 0;  // accu >= 0
  T lr, rho, one_minus_rho, eps;
  FU_HD explicit Rmsprop(const HyperParams& h)
      : lr(T(h.learning_rate)),
        rho(T(h.beta1)),
        one_minus_rho(T(1.0 - h.beta1)),
        eps(T(h.epsilon)) {}
  FU_HD T operator()(T g, StateVec<T, 1>& s) const {
    const T a = rho * s[0] + one_minus_rho * (g * g);
    s[0] = a;
    return -(lr * g / FU_MATH::sqrt(a + eps));
  }
};

// a <- rho a + (1-rho) g^2;  u = g sqrt(d + eps) / sqrt(a + eps) with the OLD d;
// p <- p - lr u;  d <- rho d + (1-rho) u^2
template <typename T>
struct Adadelta {
  using value_type = T;
  static constexpr int kNumStates = 2;
  static constexpr unsigned kSignedStates = 0;  // accu, delta_accu >= 0
  T lr, rho, one_minus_rho, eps;
  FU_HD explicit Adadelta(const HyperParams& h)
      : lr(T(h.learning_rate)),
        rho(T(h.beta1)),
        one_minus_rho(T(1.0 - h.beta1)),
        eps(T(h.epsilon)) {}
  FU_HD T operator()(T g, StateVec<T, 2>& s) const {
    const T a = rho * s[0] + one_minus_rho * (g * g);
    const T d = s[1];
    const T u = g * FU_MATH::sqrt(d + eps) / FU_MATH::sqrt(a + eps);
    s[0] = a;
    s[1] = rho * d + one_minus_rho * (u * u);
    return -(lr * u);
  }
};

}  // namespace fusedupdates
