#!/usr/bin/env bash
# Installs the Debian 12 packages bnlab needs. Idempotent and non-interactive:
# packages already present are left alone, so a second run costs seconds.
#   scripts/setup.sh           what the build, the tests and `bnlab` need
#   scripts/setup.sh --peers   also PyTorch, numpy and ONNX (Debian's), for the
#                              benchmark's PyTorch peer and the golden scripts,
#                              and OpenBLAS: without it Debian's PyTorch runs its
#                              matrix products on the reference BLAS (about
#                              1 GFLOP/s), which would make any comparison unfair
#   scripts/setup.sh --fuzz    also clang (with libFuzzer's runtime), for the
#                              `fuzz` preset
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  libhwy-dev libdnnl-dev libcli11-dev nlohmann-json3-dev zlib1g-dev libdeflate-dev
  libgtest-dev libbenchmark-dev
  openmpi-bin libopenmpi-dev
  dataset-fashion-mnist
  chromium
)

case "${1:-}" in
  --peers) packages+=(python3-torch python3-numpy python3-onnx libopenblas0-pthread) ;;
  --fuzz) packages+=(clang) ;;
esac

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all packages present"
fi
