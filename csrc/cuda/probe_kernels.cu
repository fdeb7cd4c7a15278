// Benchmark probes, used by no update: the bandwidth ceiling (the CPU backend's
// bandwidth_probe on the GPU: the same streams as an update rule, n_rw read and written and
// n_ro only read, with the same 16-byte packs and grid-stride loop but almost no arithmetic)
// and a device-to-device copy.
#include <stdexcept>

#include "../common/dtype_dispatch.h"
#include "device_util.cuh"
#include "launch.h"

namespace fusedupdates::cuda {
namespace {

template <class S, int kRw, int kRo>
__device__ __forceinline__ void stream_element(S* const (&w)[4], const S* const (&r)[2],
                                               int64_t i) {
  using T = compute_t<S>;
  const T c = static_cast<T>(1e-7);
  T in = T(0);
  if constexpr (kRo > 0) in += to_compute<S>(r[0][i]);
  if constexpr (kRo > 1) in += to_compute<S>(r[1][i]);
#pragma unroll
  for (int k = 0; k < kRw; ++k) w[k][i] = to_storage<S>(to_compute<S>(w[k][i]) + c * in);
}

template <class S, int kRw, int kRo>
__global__ void __launch_bounds__(kThreads) probe_kernel(const BandwidthProbeArgs a) {
  using T = compute_t<S>;
  constexpr int V = kPackElements<S>;
  S* const w[4] = {static_cast<S*>(a.rw[0]), static_cast<S*>(a.rw[1]), static_cast<S*>(a.rw[2]),
                   static_cast<S*>(a.rw[3])};
  const S* const r[2] = {static_cast<const S*>(a.ro[0]), static_cast<const S*>(a.ro[1])};
  bool aligned = true;
#pragma unroll
  for (int k = 0; k < kRw; ++k) aligned = aligned && is_aligned(w[k]);
#pragma unroll
  for (int k = 0; k < kRo; ++k) aligned = aligned && is_aligned(r[k]);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  int64_t done = 0;
  if (aligned) {
    const T c = static_cast<T>(1e-7);
    const int64_t packs = a.numel / V;
    for (int64_t i = first; i < packs; i += stride) {
      Pack<S, V> in[2];
#pragma unroll
      for (int k = 0; k < kRo; ++k) in[k] = load_pack<S, V>(r[k], i, true);
#pragma unroll
      for (int k = 0; k < kRw; ++k) {
        Pack<S, V> v = load_pack<S, V>(w[k], i, true);
#pragma unroll
        for (int j = 0; j < V; ++j) {
          T sum = T(0);
          if constexpr (kRo > 0) sum += to_compute<S>(in[0].v[j]);
          if constexpr (kRo > 1) sum += to_compute<S>(in[1].v[j]);
          v.v[j] = to_storage<S>(to_compute<S>(v.v[j]) + c * sum);
        }
        store_pack<S, V>(w[k], i, v);
      }
    }
    done = packs * V;
  }
  for (int64_t i = done + first; i < a.numel; i += stride) stream_element<S, kRw, kRo>(w, r, i);
}

template <class S>
void launch_probe_typed(const BandwidthProbeArgs& args, int n_rw, int n_ro, int device,
                        Stream stream) {
  auto launch = [&](auto kernel) {
    const int64_t packs = (args.numel + kPackElements<S> - 1) / kPackElements<S>;
    const int grid =
        grid_for((packs + kThreads - 1) / kThreads, reinterpret_cast<const void*>(kernel), device);
    kernel<<<grid, kThreads, 0, as_cuda(stream)>>>(args);
    check_launch("bandwidth probe kernel");
  };
  switch (n_rw * 10 + n_ro) {  // validated by the binding: 1..4 written, 0..2 read
    case 10: launch(probe_kernel<S, 1, 0>); break;
    case 11: launch(probe_kernel<S, 1, 1>); break;
    case 12: launch(probe_kernel<S, 1, 2>); break;
    case 20: launch(probe_kernel<S, 2, 0>); break;
    case 21: launch(probe_kernel<S, 2, 1>); break;
    case 22: launch(probe_kernel<S, 2, 2>); break;
    case 30: launch(probe_kernel<S, 3, 0>); break;
    case 31: launch(probe_kernel<S, 3, 1>); break;
    case 32: launch(probe_kernel<S, 3, 2>); break;
    case 40: launch(probe_kernel<S, 4, 0>); break;
    case 41: launch(probe_kernel<S, 4, 1>); break;
    case 42: launch(probe_kernel<S, 4, 2>); break;
    default:
      throw std::invalid_argument("bandwidth_probe: needs 1..4 written and 0..2 read-only arrays");
  }
}

}  // namespace

void launch_bandwidth_probe(DType dtype, const BandwidthProbeArgs& args, int n_rw, int n_ro,
                            int device, Stream stream) {
  if (args.numel <= 0) return;
  dispatch_storage<__half, __nv_bfloat16>(dtype, [&](auto storage) {
    launch_probe_typed<decltype(storage)>(args, n_rw, n_ro, device, stream);
  });
}

void launch_copy_probe(void* dst, const void* src, std::size_t bytes, Stream stream) {
  check_cuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, as_cuda(stream)),
             "cudaMemcpyAsync");
}

}  // namespace fusedupdates::cuda
