#!/usr/bin/env bash
# Large global batches (issue 15): the tiny model (learning rate 0.01, as the demo) on a synthetic corpus of 10
# speakers (or CORPUS), split by speaker, trained by one rank at
# the seed's batch 64 and by two nodes of the cluster in a box (1 rank each, 10 Gbit/s links) at batch 256 with
# the learning rate scaled linearly and 2 epochs of warmup; prints both test accuracies (held-out speakers).
# Root only (network namespaces). Usage: Benchmarks/large-batch.sh [SERTRAIN] [WORK_DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
sertrain=$(realpath "${1:-$root/.build/release/sertrain}")
work=${2:-$(mktemp -d /tmp/sertrain-large-batch-XXXXXX)}
mkdir -p "$work"
cd "$work"
corpus=${CORPUS:-$work/corpus}
if [ ! -f f.h5 ]; then
  [ -d "$corpus" ] || "$sertrain" synth -o "$corpus" --speakers 10 --per-class 10 --seed 3 >/dev/null
  "$sertrain" extract "$corpus" -o f.h5 -q
fi
common=(train --data f.h5 --model "${MODEL:-tiny}" --learning-rate "${LR:-0.01}" --split speaker --val-fraction 0.2
  --test-fraction 0.2 --epochs 40 --seed "${SEED:-0}")
accuracy() { grep -oE "test split, [0-9]+ rows: loss [0-9.]+, accuracy [0-9.]+" "$1" | awk '{print $NF}'; }

OPENBLAS_NUM_THREADS=1 "$sertrain" "${common[@]}" --batch-size 64 --run-dir b64 >b64.log 2>&1
echo "1 rank, batch 64: test accuracy $(accuracy b64.log), $(($(grep -c . b64/history.csv) - 1)) epochs"

unshare --pid --fork --kill-child --mount-proc --mount bash -s "$root" "$sertrain" "${common[*]}" <<'BOX'
set -euo pipefail
root=$1 sertrain=$2
read -r -a common <<<"$3"
source "$root/Tests/Cluster/box.sh"
trap box_down EXIT
box_net_up 2 10gbit
box_mpi_agent
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
box_client mpirun -n 2 --host srt-n1:1,srt-n2:1 --mca plm_rsh_agent "$BOX/agent" --bind-to none -x OPENBLAS_NUM_THREADS \
  --wdir "$PWD" "$sertrain" "${common[@]}" --batch-size 256 --lr-scaling linear --warmup-epochs 2 --run-dir b256 \
  >b256.log 2>&1
BOX
echo "2 nodes, batch 256, --lr-scaling linear --warmup-epochs 2: test accuracy $(accuracy b256.log), $(($(grep -c . b256/history.csv) - 1)) epochs"
