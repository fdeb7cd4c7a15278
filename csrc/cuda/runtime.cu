// The CUDA runtime as the backend uses it: error checks, grid sizing, the setup stream, and the
// two small kernels that write device tables and the control block from the host without a
// host-side copy (so neither waits for the stream, and both are safe inside a stream capture).
#include <cstring>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>

#include "device_util.cuh"
#include "launch.h"

namespace fusedupdates::cuda {

void check_cuda(cudaError_t status, const char* what) {
  if (status == cudaSuccess) return;
  throw std::runtime_error(std::string("fusedupdates CUDA error in ") + what + ": " +
                           cudaGetErrorName(status) + ": " + cudaGetErrorString(status));
}

int resident_blocks(const void* kernel, int device) {
  static std::mutex mutex;
  static std::map<std::pair<const void*, int>, int> cache;
  const std::lock_guard<std::mutex> lock(mutex);
  const auto key = std::make_pair(kernel, device);
  const auto hit = cache.find(key);
  if (hit != cache.end()) return hit->second;
  int sms = 0, per_sm = 0;
  check_cuda(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device),
             "cudaDeviceGetAttribute");
  check_cuda(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, 0),
             "cudaOccupancyMaxActiveBlocksPerMultiprocessor");
  const int blocks = (sms > 0 ? sms : 1) * (per_sm > 0 ? per_sm : 1);
  cache.emplace(key, blocks);
  return blocks;
}

namespace {

// Kernel parameters are copied at launch (and into a graph node when captured), so the host
// buffer may be reused as soon as the launch returns. 4 KiB is the portable parameter limit.
constexpr int kUploadWords = 1000;
struct UploadArgs {
  std::uint32_t* dst;
  int words;
  std::uint32_t data[kUploadWords];
};
static_assert(sizeof(UploadArgs) <= 4096, "kernel parameters are limited to 4 KiB");

__global__ void upload_kernel(const UploadArgs a) {
  for (int i = threadIdx.x; i < a.words; i += blockDim.x) a.dst[i] = a.data[i];
}

__global__ void set_control_kernel(Control* c, const HyperParams h, int write_step, int reset) {
  c->hyper.learning_rate = h.learning_rate;
  c->hyper.beta1 = h.beta1;
  c->hyper.beta2 = h.beta2;
  c->hyper.epsilon = h.epsilon;
  c->hyper.momentum = h.momentum;
  c->hyper.grad_scale = 1.0;  // informational: the update kernel derives its own
  if (write_step) c->hyper.step = h.step;
  if (reset) c->blocks_done = 0u;
}

}  // namespace

void upload_bytes(void* dst, const void* src, std::size_t bytes, Stream stream) {
  if (bytes % 4 != 0) throw std::invalid_argument("upload_bytes: size must be a multiple of 4");
  const std::size_t words = bytes / 4;
  const auto* in = static_cast<const unsigned char*>(src);
  UploadArgs args;
  for (std::size_t done = 0; done < words; done += kUploadWords) {
    const std::size_t count = words - done < kUploadWords ? words - done : kUploadWords;
    args.dst = static_cast<std::uint32_t*>(dst) + done;
    args.words = static_cast<int>(count);
    std::memcpy(args.data, in + done * 4, count * 4);
    upload_kernel<<<1, kThreads, 0, as_cuda(stream)>>>(args);
    check_launch("table upload");
  }
}

void launch_set_control(Control* control, const HyperParams& h, bool write_step, bool reset,
                        Stream stream) {
  set_control_kernel<<<1, 1, 0, as_cuda(stream)>>>(control, h, write_step ? 1 : 0, reset ? 1 : 0);
  check_launch("hyperparameter update");
}

bool stream_is_capturing(Stream stream) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  check_cuda(cudaStreamIsCapturing(as_cuda(stream), &status), "cudaStreamIsCapturing");
  if (status == cudaStreamCaptureStatusInvalidated)
    throw std::runtime_error("fusedupdates: the stream capture was invalidated by an earlier call");
  return status == cudaStreamCaptureStatusActive;
}

Stream setup_stream(int device) {
  static std::mutex mutex;
  static std::map<int, cudaStream_t> streams;  // deliberately leaked: outlives every graph
  const std::lock_guard<std::mutex> lock(mutex);
  const auto hit = streams.find(device);
  if (hit != streams.end()) return hit->second;
  cudaStream_t s = nullptr;
  check_cuda(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
  streams.emplace(device, s);
  return s;
}

void synchronize_stream(Stream stream) {
  check_cuda(cudaStreamSynchronize(as_cuda(stream)), "cudaStreamSynchronize");
}

void set_device(int device) { check_cuda(cudaSetDevice(device), "cudaSetDevice"); }

int current_device() {
  int device = 0;
  check_cuda(cudaGetDevice(&device), "cudaGetDevice");
  return device;
}

int pointer_device(std::uintptr_t ptr) {
  cudaPointerAttributes attr{};
  if (cudaPointerGetAttributes(&attr, reinterpret_cast<const void*>(ptr)) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky-free error of an unknown pointer
    return -1;
  }
  return attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged ? attr.device : -1;
}

void launch_copy(void* dst, const void* src, std::size_t bytes, Stream stream) {
  check_cuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, as_cuda(stream)),
             "cudaMemcpyAsync");
}

}  // namespace fusedupdates::cuda
