// A host-only stand-in for the runtime half of csrc/cuda/launch.h, so that the CUDA backend's
// host logic (csrc/cuda/tables.cpp, step_engine.cpp) can be tested without a GPU: "device"
// memory is host memory, every queued operation takes effect at once but completes (for
// events and synchronisation) only when the test drains its stream, a capturing stream records
// update launches into a "graph" the test can replay, and everything is logged.
#pragma once
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "../../csrc/cuda/launch.h"

namespace fusedupdates::cuda::fake {

// One executed update launch, as the kernel would have seen its scalars.
struct Launch {
  Stream stream;
  DType dtype;
  Modifier modifier;
  int64_t begin, end;
  double step, learning_rate, momentum;  // the values the kernel used
  bool control;                          // read t and the rule fields from the device
  double grad_scale;                     // the multiplier applied to every grad
  bool skipped;                          // skip_nonfinite and a non-finite sum of squares
};

struct Wait {
  Stream stream;  // waits for work queued on...
  Stream on;
};

struct State {
  std::map<Stream, uint64_t> queued, done;  // per stream: operations queued, completed
  std::set<Stream> capturing;
  std::map<Stream, std::vector<UpdateArgs>> graph;  // launches recorded while capturing
  std::map<Stream, std::vector<std::pair<DType, Modifier>>> graph_kinds;
  std::vector<Launch> launches;
  std::vector<Wait> waits;
  std::vector<std::string> log;  // "upload <stream> <bytes>", "sync <stream>", ...
  int relaxed_depth = 0;
  int uploads_outside_relaxed_while_capturing = 0;
};

State& state();
std::recursive_mutex& lock();  // held by every fake runtime call
void reset();
void drain(Stream stream);       // completes everything queued on `stream`
void replay(Stream capture_on);  // runs the launches recorded on that stream (a graph launch)
Stream stream(int k);            // fake stream handles 1, 2, ...
bool logged(const std::string& prefix);

}  // namespace fusedupdates::cuda::fake
