// Checks every array of one step BEFORE anything is written, so that an error never leaves
// some parameters updated and others not. Shared by the CPU and CUDA bindings, which
// describe their arrays with ArrayDesc.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "dtype.h"

namespace fusedupdates {

struct ArrayDesc {
  bool present = false;  // false for a missing optional array (velocity of an excluded param)
  std::uintptr_t ptr = 0;
  int64_t numel = 0;
  DType dtype = DType::kUnsupported;
  std::string dtype_str;  // for messages when unsupported
  const int64_t* shape = nullptr;
  int ndim = 0;
  bool contiguous = false;
  bool writeable = false;
  int device = -1;  // -1 for host memory
  int64_t nbytes() const { return dtype == DType::kUnsupported ? 0 : numel * dtype_size(dtype); }
};

// One named list of arrays, e.g. {"grads", [...]} or {"state 'm'", [...]}.
struct ArrayGroup {
  std::string name;
  std::vector<ArrayDesc> arrays;
  bool writeable;  // written by the step (params, states) or only read (grads)
};

std::string shape_str(const ArrayDesc& a);

// Validates params, grads and state groups (each the same length as params; a state group
// may hold non-present entries only if allow_missing). Throws ArgTypeError / ArgValueError.
void validate_step(const ArrayGroup& params, const ArrayGroup& grads,
                   const std::vector<const ArrayGroup*>& states,
                   const std::vector<bool>& allow_missing);

// Validates the parameter list of an updater: supported dtype, contiguous, writeable, and
// no array listed twice or overlapping another.
void validate_params(const ArrayGroup& params);

// Validates a list of read-only inputs and an optional list of outputs of the same shapes
// (norm constraints). outputs may alias inputs element-wise (in place), nothing else.
void validate_inputs_outputs(const ArrayGroup& inputs, const ArrayGroup* outputs);

}  // namespace fusedupdates
