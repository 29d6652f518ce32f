#!/usr/bin/env bash
# The measurements of `sertrain bench scale`, which starts this script as PID 1 of its own PID and mount namespaces
# (so that nothing outlives it) and reads what it writes. Two nodes of the cluster in a box (Tests/Cluster/box.sh:
# network namespaces, veth links capped with tc tbf), 1 rank x 1 BLAS thread on each; mpirun in the hub starts the
# ranks through an agent that enters each node's namespaces. For each model: one rank alone (compute, and when
# each gradient bucket would be ready), then for each link rate and bucket size, 2 nodes; REPEATS times, interleaved.
# Each run's JSON line goes to OUT with its labels.
#
# Environment: SERTRAIN OUT MODELS RATES BUCKETS (MiB, 0 = blocking) REPEATS and CHILD (more child arguments).
set -euo pipefail
# shellcheck disable=SC2153 # RATES, BUCKETS and MODELS come from the environment
: "${RATES:?}" "${BUCKETS:?}" "${MODELS:?}" "${OUT:?}" "${SERTRAIN:?}" "${REPEATS:?}"
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=Tests/Cluster/box.sh
source "$root/Tests/Cluster/box.sh"
trap box_down EXIT
read -r -a rates <<<"$RATES"
read -r -a buckets <<<"$BUCKETS"
read -r -a models <<<"$MODELS"
read -r -a child <<<"${CHILD:-}"
box_net_up 2 "${rates[0]}"

box_mpi_agent
agent=$BOX/agent
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1

# label JSON: prefixes a child's last JSON line with the run's labels.
label() { echo "{\"labels\": $1, \"sample\": $(grep '^{' | tail -1)}" >>"$OUT"; }

for repeat in $(seq 1 "$REPEATS"); do
  for model in "${models[@]}"; do
    "$SERTRAIN" bench scale --child --models "$model" --bucket-mb "${buckets[-1]}" "${child[@]}" \
      | label "{\"model\": \"$model\", \"nodes\": 1, \"rate\": \"\", \"bucket_mb\": ${buckets[-1]}, \"repeat\": $repeat}"
    for rate in "${rates[@]}"; do
      box_set_rate "$rate"
      for bucket in "${buckets[@]}"; do
        box_client mpirun -n 2 --host srt-n1:1,srt-n2:1 --mca plm_rsh_agent "$agent" --bind-to none \
          -x OPENBLAS_NUM_THREADS "$SERTRAIN" bench scale --child --models "$model" --bucket-mb "$bucket" "${child[@]}" \
          | label "{\"model\": \"$model\", \"nodes\": 2, \"rate\": \"$rate\", \"bucket_mb\": $bucket, \"repeat\": $repeat}"
        echo "scale: $model, $rate, bucket $bucket MiB, repeat $repeat done" >&2
      done
    done
  done
done
