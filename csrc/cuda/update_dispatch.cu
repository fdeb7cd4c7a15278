// From a runtime (rule, dtype, modifier) to the compiled update launcher, with the dtype
// dispatch and the dispatch_rule both backends use.
#include <stdexcept>

#include "../common/dtype_dispatch.h"
#include "../rules/rules.h"
#include "device_util.cuh"
#include "launch.h"
#include "update_launch.h"

namespace fusedupdates::cuda {
namespace {

template <class S>
struct LaunchRule {
  Modifier modifier;
  const UpdateArgs& args;
  int device;
  Stream stream;
  template <template <class> class R>
  void operator()() const {
    using Plain = R<compute_t<S>>;
    switch (modifier) {
      case Modifier::kNone: launch_update_typed<S, Plain>(args, device, stream); return;
      case Modifier::kMomentum:
        launch_update_typed<S, WithMomentum<Plain, false>>(args, device, stream);
        return;
      case Modifier::kNesterov:
        launch_update_typed<S, WithMomentum<Plain, true>>(args, device, stream);
        return;
    }
    throw std::invalid_argument("fusedupdates: unknown momentum modifier");
  }
};

}  // namespace

void launch_update(RuleId rule, DType dtype, Modifier modifier, const UpdateArgs& args, int device,
                   Stream stream) {
  dispatch_storage<__half, __nv_bfloat16>(dtype, [&](auto storage) {
    using S = decltype(storage);
    if (!dispatch_rule(rule, LaunchRule<S>{modifier, args, device, stream}))
      throw std::invalid_argument("fusedupdates: unknown rule id");
  });
}

}  // namespace fusedupdates::cuda
