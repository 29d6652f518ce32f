#!/usr/bin/env bash
# Installs the C libraries sertrain links against (Debian/Ubuntu). Idempotent: apt-get runs only for what is missing.
# `install-deps.sh --test` also installs what the tests use: shellcheck (the Launch scripts), chromium (rendering
# the HTML report), Slurm, munge and iproute2 (the cluster in a box; their daemons are not started here), and
# python3-venv (Tests/Shell/keras.sh installs Keras 3 into a virtual environment).
set -euo pipefail
pkgs=(pkg-config libopenmpi-dev openmpi-bin libopenblas-dev libfftw3-dev libsndfile1-dev libhdf5-dev libsoxr-dev)
[ "${1:-}" = "--test" ] && pkgs+=(shellcheck chromium slurm-wlm munge iproute2 python3-venv)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all present (${pkgs[*]})"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
