#!/usr/bin/env bash
# Compiles the expert FFN kernels to the PTX that the CUDA backend loads (the Maven profile
# "nvcc" runs this: ./mvnw -B -pl expert-node -am -Pnvcc package). The output is committed, so a
# build without nvcc uses it as it is.
#
# Driver compatibility: the PTX targets compute_80 (A100 and newer; the driver JIT-compiles it
# for the GPU at hand) and declares PTX ISA 8.0, the ISA of CUDA 12.0, so any driver for CUDA
# 12.0 or newer loads it. nvcc 13 writes ".version 9.0" (drivers for CUDA 13 only) although these
# kernels use nothing newer than ISA 8.0; the header is lowered here, and the ptxas test
# (PtxAssemblesTest) checks that the result still assembles.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$here/../resources/io/moecluster/expert/cuda/expert_ffn.ptx"
NVCC="${NVCC:-nvcc}"
if ! command -v "$NVCC" >/dev/null 2>&1; then
  echo "build-ptx: $NVCC is not on the PATH; keeping the committed $out" >&2
  exit 0
fi
tmp="$(mktemp)"
trap 'rm -f "$tmp"' EXIT
"$NVCC" -arch=compute_80 -ptx -O3 -o "$tmp" "$here/expert_ffn.cu"
sed -E 's/^\.version [0-9]+\.[0-9]+$/.version 8.0/' "$tmp" > "$out"
echo "build-ptx: wrote $out" >&2
