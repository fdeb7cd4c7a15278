// Native host tests of the step engine's parameter groups and device-side loss scaling
// (split from test_cuda_host.cpp, which runs them from main()).
#include "host_test_support.h"

namespace host_test {

// Parameter groups: one launch per (dtype, group, modifier), each with its group's values,
// eagerly and in a captured graph; a group's change reaches only its launches; t is the
// core's single counter, advanced once per step (not per group).
void test_parameter_groups_launch_with_their_own_values() {
  fresh();
  std::vector<double> memory(64, 0.0);
  auto core = std::make_shared<StepCore>(0, false, 2);
  std::vector<TensorDesc> tensors(3);
  const uint32_t group_of[3] = {1, 0, 1};
  const void* grads[3];
  for (int i = 0; i < 3; ++i) {
    tensors[i] = TensorDesc{
        &memory[8 * i], {&memory[8 * i + 2], &memory[8 * i + 4]}, 2, DType::kFloat32, i == 2,
        group_of[i]};
    if (i == 2) tensors[i].state[2] = &memory[30];
    grads[i] = &memory[40 + 4 * i];
  }
  StepEngine engine(core, RuleId::kAdam, Modifier::kMomentum, tensors);
  const auto& launches = engine.launches();
  CHECK(launches.size() == 3);  // group 0 plain, group 1 plain, group 1 momentum
  CHECK(launches[0].group == 0 && launches[1].group == 1 && launches[2].group == 1);
  CHECK(!launches[1].with_momentum && launches[2].with_momentum);
  engine.set_hyperparameters([](HyperParams& h, double& m) {
    h.learning_rate = 0.1;
    m = 0.5;
  });
  engine.set_hyperparameters(
      [](HyperParams& h, double& m) {
        h.learning_rate = 0.2;
        m = 0.6;
      },
      1);
  CHECK(engine.hyperparameters(0).learning_rate == 0.1 &&
        engine.hyperparameters(1).momentum == 0.6);
  StepRequest r;
  r.grads = grads;
  r.stream.stream = A;
  engine.step(r);  // eager
  const auto& l = fk::state().launches;
  CHECK(l.size() == 3 && l[0].learning_rate == 0.1 && l[1].learning_rate == 0.2);
  CHECK(l[2].learning_rate == 0.2 && l[2].momentum == 0.6 && l[0].step == 1 && l[2].step == 1);
  fk::state().capturing.insert(A);
  engine.step(r);  // captured: the control block holds both groups
  fk::state().capturing.clear();
  engine.set_hyperparameters(
      [](HyperParams& h, double& m) {
        h.learning_rate = 0.3;
        m = 0.7;
      },
      1);
  fk::state().launches.clear();
  fk::replay(A);
  fk::replay(A);
  CHECK(l.size() == 6 && l[0].control && l[0].learning_rate == 0.1);
  CHECK(l[1].learning_rate == 0.3 && l[2].learning_rate == 0.3 && l[2].momentum == 0.7);
  CHECK(l[0].step == 2 && l[2].step == 2 && l[3].step == 3 && l[5].step == 3);
  CHECK(engine.t() == 3);
  bool threw = false;
  try {
    engine.set_hyperparameters([](HyperParams&, double&) {}, 2);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  CHECK(threw);
}

// Loss scaling: a step with skip_nonfinite moves t to the device (a control block, created
// outside any graph), passes the scale and the applied-flag pointer to every launch, and a
// non-finite sum of squares leaves t where it was, without any host synchronisation.
void test_skip_nonfinite_keeps_t_on_the_device() {
  fresh();
  auto e = make_engines();
  std::vector<double> norm_buffer(kNormBufferDoubles, 0.0);
  StepRequest r = request(*e, A);
  r.skip_nonfinite = true;
  r.inverse_scale = 0.25;
  r.norm_buffer = norm_buffer.data();
  const auto applied = [&] {
    return reinterpret_cast<const unsigned char*>(&norm_buffer[kFlagsOffset])[0];
  };
  norm_buffer[kPartialsOffset] = 1.0;  // finite grads
  e->inner->step(r);
  CHECK(e->core->control.ptr != 0 && applied() == 1);
  CHECK(fk::state().launches.back().grad_scale == 0.25 && !fk::state().launches.back().skipped);
  CHECK(!fk::logged("read"));                   // nothing read back from the device during a step
  norm_buffer[kPartialsOffset] = std::nan("");  // a NaN grad
  e->inner->step(r);
  CHECK(fk::state().launches.back().skipped && applied() == 0);
  CHECK(e->inner->t() == 1);  // the skipped step did not count (read from the device)
  norm_buffer[kPartialsOffset] = 4.0;
  const float device_scale = 8.0f;
  r.scale_device = &device_scale;
  e->inner->step(r);
  CHECK(applied() == 1 && fk::state().launches.back().grad_scale == 0.125);
  CHECK(fk::state().launches.back().step == 2 && e->inner->t() == 2);
  StepRequest plain = request(*e, A);  // a plain step after them still counts on the device
  e->inner->step(plain);
  CHECK(e->inner->t() == 3);
}

}  // namespace host_test
