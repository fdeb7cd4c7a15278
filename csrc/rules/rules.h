// The one header backends include: every rule, the momentum wrapper, the element update
// that combines them, and the dispatch from a runtime RuleId to a compile-time rule type.
#pragma once
#include "adam_family.h"
#include "basic.h"
#include "common.h"
#include "momentum.h"
#include "norm.h"

namespace fusedupdates {

// The per-step scalars applied around every rule: the total-norm multiplier of the gradient,
// torch-style L2 weight decay (added to the gradient after clipping) and decoupled weight
// decay (AdamW: the parameter shrinks before the rule's delta is added). Both decays are
// exact no-ops at 0: the gradient is selected unchanged and the parameter multiplied by 1.
template <typename T>
struct ElementScalars {
  T grad_scale, l2, keep;
  FU_HD explicit ElementScalars(const HyperParams& h)
      : grad_scale(T(h.grad_scale)),
        l2(T(h.weight_decay)),
        keep(T(1.0 - h.learning_rate * h.decoupled_weight_decay)) {}
};

// The whole per-element step, shared by every backend: scale the gradient by the total-norm
// multiplier, add the L2 decay, run the rule, add its delta to the (decayed) parameter, in T.
template <class Rule>
FU_HD typename Rule::value_type update_element(
    const Rule& rule, const ElementScalars<typename Rule::value_type>& k,
    typename Rule::value_type p, typename Rule::value_type g,
    StateVec<typename Rule::value_type, Rule::kNumStates>& s) {
  using T = typename Rule::value_type;
  const T scaled = g * k.grad_scale;
  const T grad = k.l2 != T(0) ? scaled + k.l2 * p : scaled;
  return p * k.keep + rule(grad, s);
}

// Calls f.template operator()<RuleTemplate>() for the rule named by id; returns false for
// an unknown id. Backends use it once per step to pick the instantiation.
template <class F>
bool dispatch_rule(RuleId id, F&& f) {
  switch (id) {
    case RuleId::kSgd: f.template operator()<Sgd>(); return true;
    case RuleId::kAdagrad: f.template operator()<Adagrad>(); return true;
    case RuleId::kRmsprop: f.template operator()<Rmsprop>(); return true;
    case RuleId::kAdadelta: f.template operator()<Adadelta>(); return true;
    case RuleId::kAdam: f.template operator()<Adam>(); return true;
    case RuleId::kAdamax: f.template operator()<Adamax>(); return true;
    case RuleId::kAmsgrad: f.template operator()<Amsgrad>(); return true;
  }
  return false;
}

}  // namespace fusedupdates
