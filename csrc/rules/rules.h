// The one header backends include: every rule, the momentum wrapper, the element update
// that combines them, and the dispatch from a runtime RuleId to a compile-time rule type.
#pragma once
#include "adam_family.h"
#include "basic.h"
#include "common.h"
#include "momentum.h"
#include "norm.h"

namespace fusedupdates {

// The whole per-element step, shared by every backend: scale the gradient by the
// total-norm multiplier, run the rule, add its delta to the parameter (in T).
template <class Rule>
FU_HD typename Rule::value_type update_element(
    const Rule& rule, typename Rule::value_type grad_scale, typename Rule::value_type p,
    typename Rule::value_type g, StateVec<typename Rule::value_type, Rule::kNumStates>& s) {
  return p + rule(g * grad_scale, s);
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
