// Declaration of the per-(storage type, rule) update launchers, Rule being a plain rule functor
// or WithMomentum<rule, nesterov>. Their definitions are instantiated only in update_<rule>.cu,
// so update_dispatch.cu refers to them without compiling the kernel again.
#pragma once
#include "layout.h"

namespace fusedupdates::cuda {

template <class S, class Rule>
void launch_update_typed(const UpdateArgs& args, int device, Stream stream);

}  // namespace fusedupdates::cuda
