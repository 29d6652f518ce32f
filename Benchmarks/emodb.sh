# shellcheck shell=bash
# Sourced by the experiment scripts: their work directory, and the feature files of EmoDB and ser-mini in it.

# experiment_setup NAME [SERTRAIN] [WORK_DIR]: sets `sertrain` (default the release build) and `shared` (SHARED,
# default ../shared), makes WORK_DIR (default a new /tmp/sertrain-NAME-XXXXXX) and enters it, two OpenBLAS threads
# unless OPENBLAS_NUM_THREADS says otherwise, and writes emodb.h5 there (`emodb_features`). `root` must be set.
experiment_setup() {
  sertrain=$(realpath "${2:-$root/.build/release/sertrain}")
  shared=${SHARED:-$root/../shared}
  local work=${3:-$(mktemp -d "/tmp/sertrain-$1-XXXXXX")}
  mkdir -p "$work"
  cd "$work" || exit 1
  export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-2}
  emodb_features "$sertrain" "$shared"
}

# emodb_features SERTRAIN SHARED: writes emodb.h5 in the current directory, once: EmoDB's recordings
# (SHARED/datasets/emodb) without boredom (6 classes, 454 recordings), by the manifest's labels.
emodb_features() {
  [ -f emodb.h5 ] && return 0
  grep -v ',boredom,' "$2/datasets/emodb/manifest.csv" >emodb6.csv
  "$1" extract "$2/datasets/emodb" --manifest emodb6.csv -o emodb.h5 -q
}

# mini_features: writes mini.h5 (ser-mini: RAVDESS, SAVEE and TESS in the Kaggle layout) here, once.
mini_features() {
  [ -f mini.h5 ] || "$sertrain" extract "$shared/datasets/ser-mini" -o mini.h5 -q
}
