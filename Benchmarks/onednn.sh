#!/usr/bin/env bash
# oneDNN's convolutions on the seed model's layers against sertrain's own (issue 33: "measure oneDNN against your own
# before choosing"): installs Debian's libdnnl-dev when it is missing (apt, as root), builds Benchmarks/onednn_conv.c,
# runs it with activations in oneDNN's layout and in sertrain's (NLC), then `sertrain bench model --profile` in the
# same precisions for sertrain's per-layer times. Compare a layer's forward with sertrain's "convN+bnN+poolN
# forward" (which includes BatchNorm and pooling) and the input plus kernel gradients with its "backward".
#
#   Benchmarks/onednn.sh [SERTRAIN] [REPEATS]    (THREADS: 2, for both OMP_NUM_THREADS and OPENBLAS_NUM_THREADS)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
sertrain=$(realpath "${1:-$root/.build/release/sertrain}")
repeats=${2:-5}
threads=${THREADS:-2}
if [ ! -f /usr/include/dnnl.h ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q libdnnl-dev >/dev/null
fi
binary=$(mktemp /tmp/onednn_conv-XXXXXX)
trap 'rm -f "$binary"' EXIT
cc -O2 -Wall "$root/Benchmarks/onednn_conv.c" -ldnnl -lm -o "$binary"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores;" \
  "$(grep -o 'avx512f\|avx512_bf16\|amx_bf16' /proc/cpuinfo | sort -u | xargs)"
for layout in any nlc; do
  echo "== oneDNN $(dpkg-query -W -f='${Version}' libdnnl-dev 2>/dev/null), activations in layout '$layout'"
  OMP_NUM_THREADS=$threads "$binary" "$repeats" "$layout"
done
echo "== sertrain"
precision=fp32
if grep -q avx512_bf16 /proc/cpuinfo; then precision=bf16; fi
OPENBLAS_NUM_THREADS=$threads "$sertrain" bench model --model seed --precision "$precision" --steps "$repeats" \
  --warmup 1 --predict-batches 2 --repeats 1 --no-peer --profile 2>&1
