// The CUDA runtime as the backend uses it: the driver check, error checks, grid sizing, device
// and capture-mode guards, the setup stream, events, and the small kernel that writes device
// tables and control blocks from the host without a host-side copy (so it never waits for the
// stream and is safe inside a stream capture).
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

namespace {

std::string version_string(int v) {
  return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10);
}

// Empty when the driver can run this runtime, else the message of the RuntimeError.
std::string driver_problem() {
  const int driver = driver_version();
  if (driver >= CUDART_VERSION) return {};
  std::string found = driver == 0 ? "no NVIDIA driver was found (cudaDriverGetVersion gave 0)"
                                  : "the installed driver supports CUDA " + version_string(driver) +
                                        " (cudaDriverGetVersion " + std::to_string(driver) + ")";
  return "fusedupdates' CUDA module was built with the CUDA " + version_string(CUDART_VERSION) +
         " runtime (CUDART_VERSION " + std::to_string(CUDART_VERSION) +
         "), which needs a driver for CUDA " + version_string(CUDART_VERSION) +
         " or newer (R580+ for CUDA 13), but " + found +
         ": update the NVIDIA driver, or build fusedupdates with a CUDA toolkit the driver "
         "supports";
}

}  // namespace

int runtime_version() { return CUDART_VERSION; }

int driver_version() {
  int driver = 0;
  if (cudaDriverGetVersion(&driver) != cudaSuccess) {
    (void)cudaGetLastError();
    driver = 0;
  }
  return driver;
}

void ensure_runtime() {
  // A static runtime can only work with a driver at least as new as itself; without this check
  // the first launch fails with a bare cudaErrorInsufficientDriver.
  static const std::string problem = driver_problem();
  if (!problem.empty()) throw std::runtime_error(problem);
}

DeviceGuard::DeviceGuard(int device) : previous_(0), switched_(false) {
  check_cuda(cudaGetDevice(&previous_), "cudaGetDevice");
  if (previous_ != device) {
    check_cuda(cudaSetDevice(device), "cudaSetDevice");
    switched_ = true;
  }
}

DeviceGuard::~DeviceGuard() {
  if (switched_) (void)cudaSetDevice(previous_);
}

RelaxedCaptureMode::RelaxedCaptureMode() {
  cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
  check_cuda(cudaThreadExchangeStreamCaptureMode(&mode), "cudaThreadExchangeStreamCaptureMode");
  previous_ = static_cast<int>(mode);
}

RelaxedCaptureMode::~RelaxedCaptureMode() {
  auto mode = static_cast<cudaStreamCaptureMode>(previous_);
  (void)cudaThreadExchangeStreamCaptureMode(&mode);
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

void copy_to_host(void* dst, const void* src, std::size_t bytes, Stream stream) {
  check_cuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, as_cuda(stream)),
             "cudaMemcpyAsync");
  stream_synchronize(stream);
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
  const DeviceGuard guard(device);
  cudaStream_t s = nullptr;
  check_cuda(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
  streams.emplace(device, s);
  return s;
}

void stream_synchronize(Stream stream) {
  check_cuda(cudaStreamSynchronize(as_cuda(stream)), "cudaStreamSynchronize");
}

int current_device() {
  int device = 0;
  check_cuda(cudaGetDevice(&device), "cudaGetDevice");
  return device;
}

int pointer_device(std::uintptr_t ptr) {
  cudaPointerAttributes attr{};
  if (cudaPointerGetAttributes(&attr, reinterpret_cast<const void*>(ptr)) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the error of an unknown pointer
    return -1;
  }
  return attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged ? attr.device : -1;
}

Event event_create() {
  cudaEvent_t event = nullptr;
  check_cuda(cudaEventCreateWithFlags(&event, cudaEventDisableTiming), "cudaEventCreateWithFlags");
  return event;
}

void event_record(Event event, Stream stream) {
  check_cuda(cudaEventRecord(static_cast<cudaEvent_t>(event), as_cuda(stream)), "cudaEventRecord");
}

bool event_done(Event event) {
  const cudaError_t status = cudaEventQuery(static_cast<cudaEvent_t>(event));
  if (status == cudaErrorNotReady) {
    // Not an error; make sure it is not left as the thread's last error for check_launch.
    if (cudaPeekAtLastError() == cudaErrorNotReady) (void)cudaGetLastError();
    return false;
  }
  check_cuda(status, "cudaEventQuery");
  return true;
}

void event_synchronize(Event event) {
  check_cuda(cudaEventSynchronize(static_cast<cudaEvent_t>(event)), "cudaEventSynchronize");
}

void stream_wait_event(Stream stream, Event event) {
  check_cuda(cudaStreamWaitEvent(as_cuda(stream), static_cast<cudaEvent_t>(event), 0),
             "cudaStreamWaitEvent");
}

}  // namespace fusedupdates::cuda
