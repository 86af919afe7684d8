#!/usr/bin/env bash
# The GPU check: everything about genoseq that only a CUDA machine can tell, in one run of at
# most ~10 minutes on one H100/H200. Writes JSON (and the logs) into a folder:
#
#     bash benchmarks/gpu_check.sh [OUT_DIR]        # default: $OUT, else benchmarks/results/gpu
#
#   kernel_tests.xml / .log   the kernel tests on CUDA for real (no Triton interpreter): Triton
#                             SSD and conv against their PyTorch references, fp32 and bf16
#   kernels.json              forward+backward ms of the SSD and conv kernels: Triton, the
#                             PyTorch reference and, when importable, mamba_ssm's Triton SSD
#   models.json               bf16 training tokens/s and peak memory per block type and of a
#                             d_model 512 hybrid at L = 8k and 32k; scoring; cached generation
#   long.json                 long context: one bf16 training step of the recipe architecture and
#                             of a d_model 512 hybrid at L = 8k, 32k and 131k, with and without
#                             activation checkpointing (tokens/s, peak CUDA memory)
#   summary.json              pass/fail counts, the SSD speed ratio to mamba_ssm, versions
#
# Nothing is downloaded. genoseq is installed with --no-deps (the kernels and models need only
# torch, triton, lightning, numpy and safetensors, which a CUDA image has). For the mamba_ssm
# comparison, put its source (the sdist of `pip download --no-deps --no-binary :all:
# mamba-ssm`) under .whl/ beside the repository: its Python and Triton code are used as they
# are, without its CUDA extension (MAMBA_SKIP_CUDA_BUILD), and the row says when it is missing.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${1:-${OUT:-benchmarks/results/gpu}}"
mkdir -p "$OUT_DIR"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1 GENOSEQ_PROGRESS=none
unset TRITON_INTERPRET
started=$(date +%s)

if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo '{"error": "no CUDA device visible to torch"}' > "$OUT_DIR/summary.json"
    echo "gpu_check: no CUDA device visible to torch" >&2
    exit 1
fi

# genoseq itself, offline and without touching the image's torch
"$PY" -m pip install -q --no-deps --no-build-isolation -e . > "$OUT_DIR/install.log" 2>&1 \
    || { echo "gpu_check: pip install -e . failed (see install.log)" >&2; exit 1; }

# mamba_ssm's Triton SSD, from a carried source tarball, without compiling its CUDA extension
MAMBA_SRC=""
for sdist in .whl/mamba_ssm-*.tar.gz .whl/mamba-ssm-*.tar.gz; do
    [ -f "$sdist" ] || continue
    mkdir -p /tmp/mamba_src && tar -xzf "$sdist" -C /tmp/mamba_src
    MAMBA_SRC=$(dirname "$(find /tmp/mamba_src -path '*/mamba_ssm/__init__.py' | head -1)")
    break
done
export GENOSEQ_MAMBA_SSM_SRC="$MAMBA_SRC"

# 1. kernel tests on CUDA (about 1-2 minutes)
timeout 240 "$PY" -m pytest -q tests/test_kernels_ssd.py tests/test_kernels_conv1d.py \
    --junitxml="$OUT_DIR/kernel_tests.xml" > "$OUT_DIR/kernel_tests.log" 2>&1
tests_rc=$?

# 2. kernel timings at 8k and 64k, bf16 (under a minute)
timeout 180 "$PY" benchmarks/bench_kernels.py --lengths 8192 65536 > "$OUT_DIR/kernels.json" 2> "$OUT_DIR/kernels.log"
kernels_rc=$?

# 3. models: per block type and the hybrid at 1k/8k/32k, d_model 512, bf16; scoring; generation
timeout 240 "$PY" benchmarks/bench_models.py --d-model 512 --recipe configs/recipe_cpu_small.yaml > "$OUT_DIR/models.json" 2> "$OUT_DIR/models.log"
models_rc=$?

# 4. long context: training steps at 8k / 32k / 131k, with and without checkpointing (~2 minutes)
timeout 180 "$PY" benchmarks/bench_long.py --device cuda --lengths 8192 32768 131072 > "$OUT_DIR/long.json" 2> "$OUT_DIR/long.log"
long_rc=$?

"$PY" - "$OUT_DIR" "$tests_rc" "$kernels_rc" "$models_rc" "$long_rc" "$started" <<'EOF'
import json, sys, time, xml.etree.ElementTree as ET
from pathlib import Path
import torch, triton

out, tests_rc, kernels_rc, models_rc, long_rc, started = Path(sys.argv[1]), *map(int, sys.argv[2:7])
summary = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
           "exit_codes": {"kernel_tests": tests_rc, "kernels": kernels_rc, "models": models_rc, "long": long_rc}}
try:
    suite = ET.parse(out / "kernel_tests.xml").getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    summary["kernel_tests"] = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    summary["kernel_test_failures"] = [
        f"{case.get('classname')}::{case.get('name')}" for case in suite.iter("testcase")
        if case.find("failure") is not None or case.find("error") is not None]
except (OSError, ET.ParseError) as err:
    summary["kernel_tests"] = f"no report: {err}"
try:
    kernels = json.loads((out / "kernels.json").read_text())
    ratios = {}
    for row in kernels["results"]:
        if row["kernel"] == "ssd" and isinstance(row.get("mamba_ssm_fwd_bwd_ms"), float) and isinstance(row.get("triton_fwd_bwd_ms"), float):
            ratios[str(row["length"])] = round(row["mamba_ssm_fwd_bwd_ms"] / row["triton_fwd_bwd_ms"], 3)
    summary["ssd_speed_vs_mamba_ssm"] = ratios or "mamba_ssm not available"
    summary["ssd_target_0.8x_met"] = bool(ratios) and min(ratios.values()) >= 0.8
except (OSError, ValueError, KeyError) as err:
    summary["kernels"] = f"no report: {err}"
try:
    models = json.loads((out / "models.json").read_text())
    summary["hybrid_train"] = [r for r in models["train"] if r.get("block") == "hybrid"]
    summary["generate_cached"] = [r for r in models["generate"] if r.get("mode") == "cached"]
except (OSError, ValueError, KeyError) as err:
    summary["models"] = f"no report: {err}"
try:
    summary["long_train"] = json.loads((out / "long.json").read_text())["train"]
except (OSError, ValueError, KeyError) as err:
    summary["long"] = f"no report: {err}"
summary["seconds"] = round(time.time() - started, 1)
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
print(json.dumps(summary, indent=2))
EOF
[ "$tests_rc" -eq 0 ] && [ "$kernels_rc" -eq 0 ] && [ "$models_rc" -eq 0 ] && [ "$long_rc" -eq 0 ]
