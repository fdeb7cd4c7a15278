// Declaration of the per-(dtype, rule, modifier) update launchers. Their definitions are
// instantiated only in update_<rule>.cu, so update_dispatch.cu refers to them without
// compiling the kernel again.
#pragma once
#include "layout.h"

namespace fusedupdates::cuda {

template <class S, template <class> class R, bool kNesterov>
void launch_update_typed(const UpdateArgs& args, int device, Stream stream);

}  // namespace fusedupdates::cuda
