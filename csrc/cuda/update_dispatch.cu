// From a runtime (rule, dtype, modifier) to the compiled update launcher, with the same
// dispatch_rule the CPU backend uses.
#include <stdexcept>

#include "../rules/rules.h"
#include "device_util.cuh"
#include "launch.h"
#include "update_launch.h"

namespace fusedupdates::cuda {
namespace {

template <class S>
struct LaunchRule {
  bool nesterov;
  const UpdateArgs& args;
  int device;
  Stream stream;
  template <template <class> class R>
  void operator()() const {
    if (nesterov)
      launch_update_typed<S, R, true>(args, device, stream);
    else
      launch_update_typed<S, R, false>(args, device, stream);
  }
};

template <class S>
void launch_for_storage(RuleId rule, bool nesterov, const UpdateArgs& args, int device,
                        Stream stream) {
  if (!dispatch_rule(rule, LaunchRule<S>{nesterov, args, device, stream}))
    throw std::invalid_argument("unknown rule id");
}

}  // namespace

void launch_update(RuleId rule, DType dtype, bool nesterov, const UpdateArgs& args, int device,
                   Stream stream) {
  switch (dtype) {
    case DType::kFloat16: launch_for_storage<__half>(rule, nesterov, args, device, stream); break;
    case DType::kFloat32: launch_for_storage<float>(rule, nesterov, args, device, stream); break;
    case DType::kFloat64: launch_for_storage<double>(rule, nesterov, args, device, stream); break;
    default: throw std::invalid_argument("unsupported dtype");
  }
}

}  // namespace fusedupdates::cuda
