// Lasagne's apply_momentum / apply_nesterov_momentum as a compile-time wrapper around ANY
// rule, so that e.g. rmsprop + momentum stays one pass over memory. The velocity is the
// wrapper's own state, stored after the inner rule's states.
#pragma once
#include "common.h"

namespace fusedupdates {

template <class Inner, bool kNesterov>
struct WithMomentum {
  using T = typename Inner::value_type;
  using value_type = T;
  static constexpr int kInnerStates = Inner::kNumStates;
  static constexpr int kNumStates = kInnerStates + 1;
  static constexpr unsigned kSignedStates = Inner::kSignedStates | (1u << kInnerStates);
  Inner inner;
  T mu;
  FU_HD explicit WithMomentum(const HyperParams& h) : inner(h), mu(T(h.momentum)) {}

  // delta = inner update;  v <- mu v + delta;
  // momentum: p <- p + v;   nesterov: p <- p + mu v + delta
  FU_HD T operator()(T g, StateVec<T, kNumStates>& s) const {
    StateVec<T, kInnerStates> inner_state;
    for (int k = 0; k < kInnerStates; ++k) inner_state[k] = s[k];
    const T delta = inner(g, inner_state);
    for (int k = 0; k < kInnerStates; ++k) s[k] = inner_state[k];
    const T v = mu * s[kInnerStates] + delta;
    s[kInnerStates] = v;
    return kNesterov ? mu * v + delta : v;
  }
};

}  // namespace fusedupdates
