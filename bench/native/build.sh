#!/usr/bin/env bash
# Builds bench/native/incache_step.cpp against one instruction set's CPU kernels, compiled with
# the flags of CMakeLists.txt (fu_add_isa), without the Python module:
#   bench/native/build.sh [SOURCE_TREE=the repository] [OUTPUT=build/incache_step] [ISA=avx512_bf16]
# ISA is one of baseline, avx2, avx512, avx512_bf16 (x86-64). ~1.5 min on 2 cores.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
src="${1:-$here/../..}"
out="${2:-$src/build/incache_step}"
isa="${3:-avx512_bf16}"
case "$isa" in
  baseline) arch=(-march=x86-64) ;;
  avx2) arch=(-march=x86-64-v3) ;;
  avx512) arch=(-march=x86-64-v4 -mprefer-vector-width=512) ;;
  avx512_bf16) arch=(-march=x86-64-v4 -mavx512bf16 -mprefer-vector-width=512) ;;
  *) echo "unknown ISA $isa" >&2; exit 2 ;;
esac
flags=(${FU_EXTRA_FLAGS:-} -O3 -std=c++20 -fopenmp -mtune=generic "${arch[@]}" -fno-math-errno -fno-trapping-math
  "-DFU_ISA_NS=isa_$isa" "-DFU_ISA_NAME=$isa" "-I$src/csrc/cpu")
objects="$out.objects"
mkdir -p "$objects"
for f in kernels norm_kernels compact_kernels; do
  g++ "${flags[@]}" -c "$src/csrc/cpu/$f.cpp" -o "$objects/$f.o" &
done
g++ -O2 -std=c++20 "-DFU_DRIVER_ISA_NS=isa_$isa" "-I$src/csrc/cpu" -c "$here/incache_step.cpp" \
  -o "$objects/incache_step.o"
wait
g++ -fopenmp "$objects"/*.o -o "$out"
echo "built $out"
