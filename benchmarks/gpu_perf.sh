#!/bin/bash
# The GPU measurements of the performance work, prepared to run in short device slots (≤ 10 min each):
#
#   bash benchmarks/gpu_perf.sh first     # one slot's worth (~7 min): the preemption check, the reference joint
#                                         # step eager / batched / compiled + roofline, the loader at 4 workers
#   bash benchmarks/gpu_perf.sh eager     # roofline + eager variants + checkpoint save, reference config (~3 min)
#   bash benchmarks/gpu_perf.sh compile   # torch.compile default / channels_last / batched          (~6 min)
#   bash benchmarks/gpu_perf.sh autotune  # max-autotune-no-cudagraphs and reduce-overhead (CUDA graphs)
#   bash benchmarks/gpu_perf.sh loader    # loader samples/s per worker count at 480² × 64 (png and npy crops), batch copy
#   bash benchmarks/gpu_perf.sh deepspeed # the trainer's step and memory under DDP and under DeepSpeed ZeRO-2 (~4 min)
#   bash benchmarks/gpu_perf.sh production # configs/cyclesr.yaml trained at HR 480², batch 64 on the quality suite's
#                                          # blur operator: samples/s, MFU, test PSNR every 100 steps (~8 min; carry
#                                          # .gpu-data/ from `python benchmarks/production_gpu.py pack`, and .whl/)
#
# Results go to $OUT (or runs/gpu-perf): one JSON and one log per part. PEAK_TFLOPS and HBM_TBPS describe the GPU
# (defaults: an H200's dense bf16 peak and HBM bandwidth); the roofline printed with the step times says how far
# the step is from the least time its ops need on that GPU. Written on a machine without a GPU: not run yet.
# The GPU image lacks webdataset and deepspeed: make their wheels here first (`bash benchmarks/gpu_wheels.sh`) and
# send .whl/ with the working tree; this script installs them there.
set -euo pipefail
cd "$(dirname "$0")/.."
parts="first eager compile autotune loader deepspeed production"
part=${1:?usage: gpu_perf.sh ${parts// /|}}
if ! printf '%s\n' $parts | grep -qx -- "$part"; then
    echo "unknown part '$part': one of $parts" >&2
    exit 2
fi
# that machine has no package index; its plain `python3` is the one that holds PyTorch
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
if ! python3 -c "import webdataset" 2>/dev/null; then
    echo "webdataset cannot be imported: make .whl/ with 'bash benchmarks/gpu_wheels.sh' and send it along" >&2
    exit 2
fi
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
out=${OUT:-runs/gpu-perf}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
PEAK_TFLOPS=${PEAK_TFLOPS:-989}
HBM_TBPS=${HBM_TBPS:-4.8}
extra=()
# without --no-memory, which cannot be undone later on a command line: the deepspeed part measures memory
common=(--configs reference --stages joint translation --peak-tflops "$PEAK_TFLOPS" --hbm-tbps "$HBM_TBPS"
    --no-scaling --roofline --reps 3)
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader | tee "$out/gpu.txt"
# the ranks' preemption agreement leaves the next step's queued work running (its GPU test is skipped on a CPU)
preemption_check() { python3 -m pytest -q tests/test_preemption.py 2>&1 | tee "$out/preemption.log"; }
case $part in
    first)
        # A session's device time is 15 minutes in all, machine start included: the measurements that decide the
        # most, each under its own time limit so that what finished comes back.
        export -f preemption_check && export out
        timeout 90 bash -c preemption_check || true
        # the common flags, the joint stage only and two repetitions (argparse keeps a flag's last value)
        timeout 330 python3 benchmarks/train_throughput.py "${common[@]}" --no-memory --stages joint --reps 2 \
            --variants bare ours trainer batched compile_batched --json "$out/first.json" 2>&1 |
            tee "$out/first.log" || true
        timeout 120 python3 benchmarks/data_throughput.py --workers 4 --loader-patch 480 --loader-batch 64 \
            --device cuda --encodings png npy --seconds 5 --json "$out/loader.json" 2>&1 | tee "$out/loader.log" || true
        exit 0 ;;
    eager)
        preemption_check
        variants=(bare ours reference trainer fused_adam batched batched_fused channels_last inplace_act)
        extra=(--checkpoint) ;;
    compile)
        variants=(ours compile compile_cl compile_batched) ;;
    autotune)
        variants=(ours compile_max compile_graphs) ;;
    deepspeed)
        # one process each: the backend the trainer picks (DDP without a launcher, DeepSpeed under its accelerate
        # config); the memory column shows each engine's gradient bucket (sized to its group, not 5e8 elements)
        flags=("${common[@]}" --stages joint --reps 2 --variants ours trainer --memory-variants trainer
            --memory-configs reference)
        python3 benchmarks/train_throughput.py "${flags[@]}" --json "$out/ddp.json" 2>&1 | tee "$out/ddp.log"
        accelerate launch --config_file configs/accelerate/deepspeed_zero2.yaml --num_processes 1 \
            benchmarks/train_throughput.py "${flags[@]}" --json "$out/deepspeed.json" 2>&1 | tee "$out/deepspeed.log"
        exit 0 ;;
    production)
        # 6.5 min of training (a second call resumes from the last checkpoint and extends the curve), then scoring
        if [ ! -d .gpu-data/blur ]; then
            echo ".gpu-data/blur missing: run 'python benchmarks/production_gpu.py pack' here and carry .gpu-data" >&2
            exit 2
        fi
        python3 benchmarks/production_gpu.py run --data .gpu-data/blur --out "$out/production" --seconds 390 \
            --peak-tflops "$PEAK_TFLOPS" --json "$out/production.json" 2>&1 | tee "$out/production.log"
        exit 0 ;;
    loader)
        python3 benchmarks/data_throughput.py --workers 1 2 4 8 --loader-patch 480 --loader-batch 64 --device cuda \
            --encodings png npy \
            --json "$out/loader.json" 2>&1 | tee "$out/loader.log"
        exit 0 ;;
esac
python3 benchmarks/train_throughput.py "${common[@]}" --no-memory --variants "${variants[@]}" "${extra[@]}" \
    --json "$out/$part.json" 2>&1 | tee "$out/$part.log"
