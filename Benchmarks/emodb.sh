# shellcheck shell=bash
# Sourced by the experiment scripts: EmoDB's feature file for speaker-fold cross-validation.

# emodb_features SERTRAIN SHARED: writes emodb.h5 in the current directory, once: EmoDB's recordings
# (SHARED/datasets/emodb) without boredom (6 classes, 454 recordings), by the manifest's labels.
emodb_features() {
  [ -f emodb.h5 ] && return 0
  grep -v ',boredom,' "$2/datasets/emodb/manifest.csv" >emodb6.csv
  "$1" extract "$2/datasets/emodb" --manifest emodb6.csv -o emodb.h5 -q
}
