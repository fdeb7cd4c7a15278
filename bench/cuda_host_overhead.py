"""Per-step host overhead of the CUDA backend, measured without a GPU.

Times ``_cuda.Stepper.prepare_step(grads)``: everything a step does on the host before its first
CUDA call (describe and check every grad, build the grad-pointer table, find the launch tables),
for the GPU ``model`` workload: a GPT-style list of 196 float32 tensors with adam. By default the
arrays are stand-ins (``__cuda_array_interface__`` over made-up, never dereferenced addresses,
like tests/test_cuda_binding.py), so this runs anywhere the CUDA module was built; ``--cupy``
uses real CuPy arrays instead (needs a GPU).

Two cases: the same grad arrays every step (the grad-pointer table is the one of the previous
step), and two grad sets in turn (a cache lookup every step).

    python bench/cuda_host_overhead.py [--rounds 3000] [--tensors 196] [--cupy]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from workloads import MODELS, transformer_shapes  # noqa: E402

ADAM = 4


class _Device:
    def __init__(self, index: int) -> None:
        self.id = index


class StandIn:
    """A float32 CUDA array at a made-up address (nothing reads it without a launch)."""

    _next = 1 << 40

    def __init__(self, shape: tuple[int, ...], dtype=np.float32) -> None:
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        ptr, StandIn._next = StandIn._next, StandIn._next + ((nbytes + 511) // 256) * 256
        self.device = _Device(0)
        self.__cuda_array_interface__ = {
            "shape": shape,
            "typestr": np.dtype(dtype).str,
            "data": (ptr, False),
            "strides": None,
            "version": 3,
        }


def _arrays(shapes, cupy):
    if cupy is None:
        return [StandIn(s) for s in shapes]
    return [cupy.zeros(s, np.float32) for s in shapes]


def time_prepare(stepper, grad_sets, rounds: int) -> list[float]:
    """Seconds per prepare_step call, one sample per call (after a warm-up)."""
    for k in range(50):
        stepper.prepare_step(grad_sets[k % len(grad_sets)])
    samples = []
    clock = time.perf_counter
    for k in range(rounds):
        grads = grad_sets[k % len(grad_sets)]
        start = clock()
        stepper.prepare_step(grads)
        samples.append(clock() - start)
    return samples


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3000)
    parser.add_argument("--tensors", type=int, default=0, help="use the first N tensors (0: all)")
    parser.add_argument("--cupy", action="store_true", help="real CuPy arrays (needs a GPU)")
    args = parser.parse_args(argv)
    from fusedupdates import _cuda

    cupy = None
    if args.cupy:
        import cupy
        import fusedupdates._cuda_backend  # noqa: F401  (registers cupy.ndarray)
    shapes = transformer_shapes(*MODELS["model-130M"])
    if args.tensors:
        shapes = shapes[: args.tensors]
    params = _arrays(shapes, cupy)
    m, v = _arrays(shapes, cupy), _arrays(shapes, cupy)
    stepper = _cuda.Stepper(ADAM, params, [m, v], ["m", "v"])
    grad_sets = [_arrays(shapes, cupy), _arrays(shapes, cupy)]
    results = {}
    kind = "CuPy arrays" if cupy else "stand-in arrays, no GPU"
    print(f"host part of one float32 adam step, {len(shapes)} tensors ({kind}):")
    for label, sets in (("same grads", grad_sets[:1]), ("two grad sets in turn", grad_sets)):
        samples = time_prepare(stepper, sets, args.rounds)
        q = statistics.quantiles(samples, n=10)
        results[label] = statistics.median(samples) * 1e6
        print(
            f"  {label:<24} median {results[label]:7.1f} us   "
            f"p10 {q[0] * 1e6:7.1f} us   p90 {q[-1] * 1e6:7.1f} us   ({args.rounds} steps)"
        )
    return results


if __name__ == "__main__":
    main()
