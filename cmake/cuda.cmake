# The optional CUDA backend, fusedupdates._cuda (included by the top-level CMakeLists.txt).
#
# FUSEDUPDATES_CUDA: AUTO builds it when a CUDA compiler is found and skips it otherwise,
# ON requires it, OFF skips it. The module links the CUDA runtime statically, so it loads next
# to CuPy whatever CUDA runtime CuPy brings, and importing it needs no GPU or driver: the
# runtime looks for the driver only at the first CUDA call.
string(TOUPPER "${FUSEDUPDATES_CUDA}" FU_CUDA_MODE)
if(FU_CUDA_MODE STREQUAL "OFF" OR FU_CUDA_MODE STREQUAL "FALSE" OR FU_CUDA_MODE STREQUAL "0")
  message(STATUS "fusedupdates: CUDA backend disabled (FUSEDUPDATES_CUDA=${FUSEDUPDATES_CUDA})")
  return()
endif()
if(NOT FU_CUDA_MODE MATCHES "^(AUTO|ON|TRUE|1)$")
  message(FATAL_ERROR "FUSEDUPDATES_CUDA must be AUTO, ON or OFF, got '${FUSEDUPDATES_CUDA}'")
endif()

# sm_80 and sm_90 machine code plus compute_90 PTX that newer GPUs JIT-compile. Override with
# -DCMAKE_CUDA_ARCHITECTURES=... or the CUDAARCHS environment variable (e.g. "native").
# Must be set before enable_language(CUDA), which would otherwise pick the compiler's default.
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES AND NOT DEFINED ENV{CUDAARCHS})
  set(CMAKE_CUDA_ARCHITECTURES "80-real;90-real;90-virtual" CACHE STRING "CUDA architectures")
endif()

include(CheckLanguage)
check_language(CUDA)
if(NOT CMAKE_CUDA_COMPILER)
  if(FU_CUDA_MODE STREQUAL "AUTO")
    message(STATUS "fusedupdates: no CUDA compiler found, building without the CUDA backend")
    return()
  endif()
  message(FATAL_ERROR "FUSEDUPDATES_CUDA=${FUSEDUPDATES_CUDA} but no CUDA compiler was found "
                      "(put nvcc on PATH or set CUDACXX / CMAKE_CUDA_COMPILER)")
endif()
# Static runtime: the module loads next to CuPy whatever CUDA runtime CuPy brings.
set(CMAKE_CUDA_RUNTIME_LIBRARY Static)
enable_language(CUDA)
set(CMAKE_CUDA_STANDARD 20)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)
message(STATUS "fusedupdates: CUDA backend for architectures ${CMAKE_CUDA_ARCHITECTURES}")

# The kernels: one translation unit per rule so that a parallel build compiles them side by
# side. No fast-math flags: sqrt and division stay IEEE-rounded like the CPU kernels.
add_library(fu_cuda_kernels STATIC
  csrc/cuda/update_sgd.cu
  csrc/cuda/update_adagrad.cu
  csrc/cuda/update_rmsprop.cu
  csrc/cuda/update_adadelta.cu
  csrc/cuda/update_adam.cu
  csrc/cuda/update_adamax.cu
  csrc/cuda/update_amsgrad.cu
  csrc/cuda/compact_sgd.cu
  csrc/cuda/compact_adagrad.cu
  csrc/cuda/compact_rmsprop.cu
  csrc/cuda/compact_adadelta.cu
  csrc/cuda/compact_adam.cu
  csrc/cuda/compact_adamax.cu
  csrc/cuda/compact_amsgrad.cu
  csrc/cuda/update_dispatch.cu
  csrc/cuda/reduce_kernels.cu
  csrc/cuda/probe_kernels.cu
  csrc/cuda/runtime.cu)
set_target_properties(fu_cuda_kernels PROPERTIES
  POSITION_INDEPENDENT_CODE ON
  CUDA_VISIBILITY_PRESET hidden
  CXX_VISIBILITY_PRESET hidden
  CUDA_RUNTIME_LIBRARY Static)
# -lineinfo: source lines in the machine code for profilers (Nsight Compute), no speed cost.
target_compile_options(fu_cuda_kernels PRIVATE
  $<$<COMPILE_LANGUAGE:CUDA>:-lineinfo>
  $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra>)

# Host code: the binding (pybind11) and the CUDA backend's host side (no pybind11, no CUDA
# header: it calls the runtime through csrc/cuda/launch.h).
pybind11_add_module(_cuda MODULE
  csrc/bindings/cuda_module.cpp
  csrc/bindings/cuda_stepper.cpp
  csrc/cuda/tables.cpp
  csrc/cuda/step_engine.cpp
  csrc/common/validate.cpp)
set_target_properties(_cuda PROPERTIES CUDA_RUNTIME_LIBRARY Static)
target_compile_options(_cuda PRIVATE -Wall -Wextra)
# --exclude-libs keeps the static runtime's symbols out of the module's dynamic symbol table,
# so they can never interpose on the runtime CuPy loads.
target_link_libraries(_cuda PRIVATE fu_cuda_kernels)
target_link_options(_cuda PRIVATE "LINKER:--exclude-libs,ALL")
install(TARGETS _cuda LIBRARY DESTINATION fusedupdates)
