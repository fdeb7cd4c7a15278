// From a runtime (rule, dtype, modifier, state format) to the compiled update launcher, with the
// dtype dispatch and the dispatch_rule both backends use.
#include <stdexcept>
#include <type_traits>

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
  template <template <class> class R, StateFormat F>
  void compact() const {
    using Plain = R<float>;
    switch (modifier) {
      case Modifier::kNone: launch_compact_typed<S, Plain, F>(args, device, stream); return;
      case Modifier::kMomentum:
        launch_compact_typed<S, WithMomentum<Plain, false>, F>(args, device, stream);
        return;
      case Modifier::kNesterov:
        launch_compact_typed<S, WithMomentum<Plain, true>, F>(args, device, stream);
        return;
    }
    throw std::invalid_argument("fusedupdates: unknown momentum modifier");
  }
  template <template <class> class R>
  void operator()() const {
    if (args.state_format != StateFormat::kFull) {
      if constexpr (std::is_same_v<S, double>) {
        throw std::invalid_argument("fusedupdates: compact state is not for float64 params");
      } else {
        if (args.state_format == StateFormat::kInt8)
          compact<R, StateFormat::kInt8>();
        else
          compact<R, StateFormat::kBFloat16>();
        return;
      }
    }
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
