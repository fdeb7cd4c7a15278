// What the CUDA binding needs from CuPy, registered once by fusedupdates/_cuda_backend.py
// (_cuda.set_cupy_hooks): device memory for tables and control blocks (the C++ allocator of
// csrc/cuda/tables.h, implemented with CuPy's pool), the current stream of a device, and the
// norm buffer a clipped step returns. Without them (no CuPy) nothing can launch, but steppers
// can still be built and validated.
#pragma once
#include <pybind11/pybind11.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <utility>

#include "../cuda/step_engine.h"
#include "../cuda/tables.h"
#include "cuda_desc.h"

namespace fusedupdates::bindings {

namespace py = pybind11;

struct CupyHooks {
  PyObject* alloc = nullptr;           // (nbytes, device, stream_ptr) -> cupy uint8 array
  PyObject* current_stream = nullptr;  // (device) -> cupy Stream
  // (device) -> (data pointer, 0-d float64 view of [0], 0-d bool view of the applied flag)
  PyObject* norm_buffer = nullptr;
  static CupyHooks& get() {
    static auto* hooks = new CupyHooks();  // never destroyed: outlives the interpreter
    return *hooks;
  }
  void check() const {
    if (alloc == nullptr)
      throw std::runtime_error(
          "fusedupdates._cuda: CuPy hooks are not registered; use fusedupdates through its "
          "public API (it imports fusedupdates._cuda_backend, which registers them)");
  }
};

// A Python object as the owner of C++-held memory or a stream: released with the GIL taken
// (the last holder may run without it), and leaked once the interpreter is gone.
inline std::shared_ptr<void> keep_alive(py::object obj) {
  return std::shared_ptr<void>(new py::object(std::move(obj)), [](void* p) {
    auto* o = static_cast<py::object*>(p);
    if (!Py_IsInitialized()) return;  // at exit: nothing may be released any more
    const py::gil_scoped_acquire gil;
    delete o;
  });
}

// Objects a captured CUDA graph writes into (norm buffers): kept for the process's life.
inline void keep_forever(const py::object& obj) { obj.inc_ref(); }

// The device allocator of the table cache: CuPy's pool, with `stream` current so that the
// memory is ordered on it (the setup stream), never on a stream being captured.
inline cuda::DeviceMemory cupy_allocate(std::size_t bytes, int device, cuda::Stream stream) {
  const py::gil_scoped_acquire gil;
  CupyHooks::get().check();
  const py::object array = py::reinterpret_borrow<py::object>(CupyHooks::get().alloc)(
      bytes, device, reinterpret_cast<std::uintptr_t>(stream));
  cuda::DeviceMemory memory;
  memory.ptr = array.attr("data").attr("ptr").cast<std::uintptr_t>();
  memory.owner = keep_alive(array);
  return memory;
}

inline void set_cupy_hooks(const py::object& ndarray_type, const py::object& alloc,
                           const py::object& current_stream, const py::object& norm_buffer) {
  CupyHooks& hooks = CupyHooks::get();
  if (hooks.alloc != nullptr) return;  // once per process (the backend is imported once)
  CudaNames::get().cupy_ndarray = ndarray_type.inc_ref().ptr();
  hooks.current_stream = current_stream.inc_ref().ptr();
  hooks.norm_buffer = norm_buffer.inc_ref().ptr();
  hooks.alloc = alloc.inc_ref().ptr();
  cuda::set_device_allocator(&cupy_allocate);
}

// CuPy's current stream of `device`, kept alive while a stepper may still use it.
inline cuda::StreamRef current_stream(int device) {
  CupyHooks::get().check();
  py::object stream = py::reinterpret_borrow<py::object>(CupyHooks::get().current_stream)(device);
  cuda::StreamRef ref;
  ref.stream = reinterpret_cast<cuda::Stream>(stream.attr("ptr").cast<std::uintptr_t>());
  ref.owner = keep_alive(std::move(stream));
  return ref;
}

// A new norm buffer (kNormBufferDoubles float64) on `device`: its pointer, the 0-d array of
// its element 0 that a clipped step returns, and the 0-d bool array of the applied flag of a
// step with skip_nonfinite (each keeps the buffer alive).
struct NormBuffer {
  double* ptr;
  py::object norm;
  py::object applied;
};
inline NormBuffer new_norm_buffer(int device) {
  CupyHooks::get().check();
  const py::tuple out = py::reinterpret_borrow<py::object>(CupyHooks::get().norm_buffer)(device);
  if (out.size() != 3) throw std::runtime_error("fusedupdates._cuda: bad norm_buffer hook");
  return {reinterpret_cast<double*>(out[0].cast<std::uintptr_t>()), out[1], out[2]};
}

}  // namespace fusedupdates::bindings
