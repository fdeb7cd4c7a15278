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
  bool aligned = true;  // the address is a multiple of the dtype's size (NumPy's ALIGNED)
  int device = -1;      // -1 for host memory
  int64_t nbytes() const { return dtype == DType::kUnsupported ? 0 : numel * dtype_size(dtype); }
};

// One named list of arrays, e.g. {"grads", [...]} or {"state 'm'", [...]}.
struct ArrayGroup {
  std::string name;
  std::vector<ArrayDesc> arrays;
  bool writeable;  // written by the step (params, states) or only read (grads)
};

std::string shape_str(const ArrayDesc& a);

// The arrays every step of an updater writes (params, the rule's states, the velocity),
// validated ONCE when the stepper is built: supported dtype, contiguous, aligned, writeable,
// one device, state dtypes and shapes matching their params, no two overlapping. It keeps
// what the per-step checks of the grads need (dtypes, shapes, sorted spans), so a step only
// describes and checks its grads: O(n log n) in the number of arrays, no allocation.
class FixedArrays {
 public:
  FixedArrays() = default;
  // scales: empty, or one group per state: the float32 block absmax values of each uint8
  // (8-bit compact) state array, None for every other. A param's states (velocity included)
  // share one storage: its compute dtype, or, for float16/32 and bfloat16 params, bfloat16 or
  // uint8 (compact state). full_only (empty: none): states kept in the compute dtype whatever
  // the others are (the float32 master weights).
  FixedArrays(const ArrayGroup& params, const std::vector<const ArrayGroup*>& states,
              const std::vector<bool>& allow_missing,
              const std::vector<const ArrayGroup*>& scales = {},
              const std::vector<bool>& full_only = {});

  size_t size() const { return dtypes_.size(); }
  DType dtype(size_t i) const { return dtypes_[i]; }
  int64_t numel(size_t i) const { return numel_[i]; }
  int device() const { return device_; }
  // The dtype param i's states are stored in (its state_dtype when it has no state).
  DType state_storage(size_t i) const { return state_storage_[i]; }

  // Checks grads[i] against params[i] (type, dtype, shape, layout, device) and against every
  // written array (no overlap). Throws ArgTypeError / ArgValueError naming the index.
  void check_grad(const ArrayDesc& grad, size_t i) const;
  // The count check of a step, before any grad is described.
  void check_grad_count(size_t count) const;

 private:
  struct Span {
    std::uintptr_t begin, end;
    int group;  // index into names_
    size_t index;
  };
  std::vector<DType> dtypes_;
  std::vector<DType> state_storage_;
  std::vector<int64_t> numel_;
  std::vector<std::vector<int64_t>> shapes_;
  std::vector<std::string> names_;  // group names, for messages
  std::vector<Span> spans_;         // every written array, sorted by address, disjoint
  int device_ = -1;
};

// Validates a list of read-only inputs and an optional list of outputs of the same shapes
// (norm constraints). outputs may alias inputs element-wise (in place), nothing else.
void validate_inputs_outputs(const ArrayGroup& inputs, const ArrayGroup* outputs);

}  // namespace fusedupdates
