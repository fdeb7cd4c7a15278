// Declaration of the per-(storage type, rule) update launchers, Rule being a plain rule functor
// or WithMomentum<rule, nesterov>. Their definitions are instantiated only in update_<rule>.cu
// and compact_<rule>.cu, so update_dispatch.cu refers to them without compiling the kernels.
#pragma once
#include "layout.h"

namespace fusedupdates::cuda {

template <class S, class Rule>
void launch_update_typed(const UpdateArgs& args, int device, Stream stream);
// The same with compact state (F bfloat16 or int8; S a 16/32-bit dtype): compact_<rule>.cu.
template <class S, class Rule, StateFormat F>
void launch_compact_typed(const UpdateArgs& args, int device, Stream stream);

}  // namespace fusedupdates::cuda
