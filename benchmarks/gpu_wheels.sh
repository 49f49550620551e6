#!/bin/bash
# Wheels of what the GPU machine's image lacks, for gpu_perf.sh to install there (that machine has no package index).
# Run here, where PyPI answers; the versions are the ones this project is tested with:
#
#   bash benchmarks/gpu_wheels.sh            # fills .whl/ (ignored by git) with cp312 x86-64 wheels, 4.8 MB
#
# then send .whl along with the working tree (the device tool's `carry: [".whl"]`) and run gpu_perf.sh there: it
# installs them into /tmp/site when .whl/ is present. WHEEL_PYTHON picks another Python (3.11 for a local rehearsal
# in a virtual environment that holds only the image's packages). The image has torch, accelerate, transformers,
# numpy, pillow, scipy, scikit-image, pyyaml, psutil, tqdm, pytest, msgpack, ninja, py-cpuinfo, einops; it lacks:
#   webdataset + braceexpand    the loader's shards (imported by cyclesr_dist.data)
#   deepspeed + hjson, pydantic (+ pydantic-core, annotated-types, typing-inspection, typing-extensions ≥ 4.14)
#                               the `deepspeed` part; PyPI has only deepspeed's source, so its wheel is built here
#                               (pure Python: its CUDA ops are compiled on first use, and this job uses none)
# wandb (20 MB) and submitit are left out: no measured path imports them.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${WHEEL_PYTHON:-3.12}
dest=.whl
rm -rf "$dest" && mkdir -p "$dest"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$py" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$dest" \
    webdataset==1.0.2 braceexpand==0.1.7 hjson==3.1.0 pydantic==2.13.4 pydantic-core==2.46.4 annotated-types==0.7.0 \
    typing-inspection==0.4.2 typing-extensions==4.16.0
DS_BUILD_OPS=0 python3 -m pip wheel -q --no-deps --no-build-isolation -w "$dest" deepspeed==0.19.8
ls "$dest"
du -sh "$dest"
