#!/usr/bin/env bash
# The GPU suite: the tests marked `cuda`, then the model, training and test.py benchmarks in
# fp32, bf16 and SDPA, then a 2-process torchrun/nccl run when 2+ GPUs are visible. Prints JSON
# lines (the card's name first); each step has its own time limit, 8 minutes in all at most.
#
#   bash benchmarks/gpu_suite.sh            # from the repository root, on a CUDA machine
#   PYTHON=/path/to/python bash benchmarks/gpu_suite.sh
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}

if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo '{"suite": "gpu", "error": "no CUDA GPU visible: nothing to run"}'
    exit 2
fi
"$PY" - <<'EOF'
import json, torch
props = torch.cuda.get_device_properties(0)
print(json.dumps({"suite": "gpu", "gpu": torch.cuda.get_device_name(0),
                  "gpus": torch.cuda.device_count(), "memory_GiB": round(props.total_memory / 2**30, 1),
                  "capability": f"{props.major}.{props.minor}", "torch": torch.__version__,
                  "cuda": torch.version.cuda, "bf16_supported": torch.cuda.is_bf16_supported()}))
EOF

FAILED=0
# step NAME LIMIT_S COMMAND...: run it, print its own output, then one JSON line with its status.
step() {
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    timeout "$limit" "$@"
    local rc=$?
    [ "$rc" -ne 0 ] && FAILED=1
    echo "{\"step\": \"$name\", \"rc\": $rc, \"timed_out\": $([ "$rc" -eq 124 ] && echo true || echo false), \"seconds\": $((SECONDS - start))}"
}

# 1. Correctness on the GPU: SDPA == explicit, fused kernels only under bf16, bf16/fp16 steps
#    finite, deterministic steps repeat, test.py CUDA labels == CPU labels (phantom).
step cuda_tests 150 "$PY" -m pytest -q -m cuda -p no:cacheprovider tests/test_cuda.py
# 2. Model forward and training step: this project (SDPA and explicit) against the original
#    design, fp32 and bf16 autocast.
step bench_model 90 "$PY" benchmarks/bench_model.py --device cuda --threads 4 \
    --variants fast-sdpa,fast-explicit,reference --tasks eval:32,train:24 --rounds 5 --iters 3 \
    --precisions fp32,bf16 --skip-memory
# 3. The training loop's own step (loss, scaler, optimiser, schedule): fp32 explicit, fp32 SDPA
#    (TF32), bf16, fp16.
step bench_train 90 "$PY" benchmarks/bench_train.py --device cuda --threads 4 \
    --variants fp32-explicit,fp32,bf16,fp16 --rounds 3 --iters 5
# 4. test.py's per-volume work against the original procedure, fp32 and bf16 (--amp).
step bench_test 120 "$PY" benchmarks/bench_test.py --device cuda --shape 512 512 100 --rounds 2
# 5. Two processes on two GPUs through nccl: a tiny phantom run must finish.
if [ "$("$PY" -c 'import torch; print(torch.cuda.device_count())')" -ge 2 ]; then
    TMP=$(mktemp -d)
    step torchrun_nccl 60 "$PY" -m torch.distributed.run --standalone --nproc_per_node=2 \
        train.py --dataset phantom --root "$TMP/phantom" --output "$TMP/run" --device cuda \
        --quiet --set train.epochs=2 --set train.val_every=2
    rm -rf "$TMP"
else
    echo '{"step": "torchrun_nccl", "skipped": "fewer than 2 GPUs"}'
fi
echo "{\"suite\": \"gpu\", \"passed\": $([ "$FAILED" -eq 0 ] && echo true || echo false), \"seconds\": $SECONDS}"
exit $FAILED
