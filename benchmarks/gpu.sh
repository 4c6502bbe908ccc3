#!/usr/bin/env bash
# Query- and train-phase speed on a GPU, with the Stable Diffusion 1.5 architecture (random weights built
# from its config: nothing is downloaded) and a CLIP ViT-B/32-architecture scorer.
#
#   bash benchmarks/gpu.sh              # CUDA: 512 px, 25 DPM-Solver steps, bf16; about 3-5 minutes on an H100
#   bash benchmarks/gpu.sh --full       # also the full fine-tune (adds a minute or two)
#   bash benchmarks/gpu.sh --dry-run    # the same code path on the CPU at toy sizes (a scaled-down SD 1.5
#                                       # shape, 64 px, 2 steps): checks the script, its figures mean nothing
#   bash benchmarks/gpu.sh --family sdxl   # instead: SDXL's architecture at 1024 px (benchmarks/families.py:
#   bash benchmarks/gpu.sh --family flux   # query vs the plain diffusers loop, LoRA steps/s, peak memory);
#                                          # Flux at 512 px (about 5 minutes on an H100); add --dry-run on a CPU
#   bash benchmarks/gpu.sh --family 2026   # FLUX.2 klein 4B/9B, Z-Image, Chroma, Qwen-Image at 512 px, each at the
#                                          # --quantize gal.memory picks for 24 GB (int8 where bf16 does not fit)
#
# Prints images/s of the project's query phase and of the plain diffusers loop, their ratio, the UNet's
# FLOPs (torch.utils.flop_counter on one forward at the batch used, x steps, x2 for classifier-free
# guidance) and the TFLOP/s reached against the GPU's bf16 dense peak; then fine-tuning steps/s.
# Results (JSON) go to $GAL_BENCH_OUT, else $OUT, else the temporary work folder.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-}
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error DIFFUSERS_VERBOSITY=error HF_HUB_DISABLE_PROGRESS_BARS=1

DRY=0
FULL=0
FAMILY=
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run|--tiny) DRY=1 ;;
        --full) FULL=1 ;;
        --family) FAMILY=${2:-}; shift ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "gpu.sh: unknown argument $1 (expected --dry-run, --full, --family sdxl|flux)" >&2; exit 2 ;;
    esac
    shift
done

if [ -n "$FAMILY" ]; then
    case "$FAMILY" in
        sdxl) ARGS=(--family sdxl) ;;
        flux|flux2-klein-4b|z-image) ARGS=(--family "$FAMILY" --resolution 512) ;;
        flux2-klein-9b|chroma) ARGS=(--family "$FAMILY" --resolution 512 --quantize int8) ;;  # what fits 24 GB (gal.memory)
        qwen-image) ARGS=(--family qwen-image --resolution 512 --quantize int8) ;;
        2026)  # each 2026 base in turn, 5 minutes at most each (one prepared run for a lent GPU)
            for f in flux2-klein-4b z-image flux2-klein-9b chroma qwen-image; do
                timeout 300 bash "$0" --family "$f" $([ "$DRY" = 1 ] && echo --dry-run) || echo "gpu.sh: --family $f failed or ran out of time" >&2
            done
            exit 0 ;;
        *) echo "gpu.sh: --family $FAMILY: expected sdxl, flux, flux2-klein-4b, flux2-klein-9b, z-image, qwen-image, chroma or 2026" >&2; exit 2 ;;
    esac
    if [ "$DRY" = 1 ]; then ARGS=(--family "$FAMILY" --dry-run); else nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true; fi
    RESULTS=${GAL_BENCH_OUT:-${OUT:-.}}
    mkdir -p "$RESULTS"
    "$PY" benchmarks/families.py "${ARGS[@]}" | tee "$RESULTS/family_$FAMILY.json"
    exit "${PIPESTATUS[0]}"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/gal-gpu-bench.XXXXXX")
trap 'rm -rf "$WORK/sd15" "$WORK/clip"' EXIT
RESULTS=${GAL_BENCH_OUT:-${OUT:-$WORK}}
mkdir -p "$RESULTS"

if [ "$DRY" = 1 ]; then
    SMALL=--small DEVICE=cpu RES=64 STEPS=2 DTYPE=fp32 TSTEPS=3
    LABEL="SD 1.5 block structure at toy widths, random weights (dry run)"
    QUERY=(--anchors 2 --m 2 --rounds 2)
    echo "gpu.sh --dry-run: CPU, scaled-down SD 1.5 shape, toy sizes: the figures below test the code path only"
else
    SMALL= DEVICE=cuda RES=512 STEPS=25 DTYPE=bf16 TSTEPS=30
    LABEL="SD 1.5 architecture (UNet 860M, VAE 84M, text encoder 123M), random weights; CLIP ViT-B/32 architecture"
    # 120 images per side (the plain loop makes them one at a time); 60 a round fit one auto-sized batch (64 on 80 GB)
    QUERY=(--anchors 6 --m 10 --rounds 2)
    "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu.sh: no CUDA device (use --dry-run on a CPU)')"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi

T0=$SECONDS
stage() { echo "[$((SECONDS - T0)) s] $*"; }

stage "building the SD 1.5-architecture pipeline and the CLIP ViT-B/32-architecture scorer (random weights)"
"$PY" benchmarks/harness.py build-sd15 "$WORK/sd15" $SMALL
"$PY" benchmarks/harness.py build-clip "$WORK/clip" $SMALL

stage "query phase: ${QUERY[*]}, $RES px, $STEPS steps, $DTYPE"
query() {
    "$PY" benchmarks/query_phase.py --base "$WORK/sd15" --scorer "$WORK/clip" --device "$DEVICE" \
        --resolution "$RES" --steps "$STEPS" --dtype "$DTYPE" "${QUERY[@]}" --label "$LABEL" --json "$@" \
        > "$RESULTS/query.json"
}
if ! query; then
    # the project side runs first: an out-of-memory at the auto batch size (gal.generate.auto_batch_size)
    # fails within a minute; say so and measure again at a fixed batch
    echo "gpu.sh: the query benchmark failed at the auto batch size (see above); again with --batch-size 16" >&2
    query --batch-size 16
fi

TRAIN=("$RESULTS/train_lora.json")
stage "fine-tuning, LoRA: $TSTEPS steps, batch 2, $RES px, $DTYPE"
"$PY" benchmarks/train_phase.py --base "$WORK/sd15" --device "$DEVICE" --resolution "$RES" --dtype "$DTYPE" \
    --method lora --steps "$TSTEPS" --batch-size 2 --label "$LABEL" --json > "$RESULTS/train_lora.json" \
    || { echo "gpu.sh: the LoRA fine-tuning benchmark failed" >&2; rm -f "$RESULTS/train_lora.json"; }
if [ "$FULL" = 1 ]; then
    stage "fine-tuning, full UNet: $TSTEPS steps, batch 2, $RES px, $DTYPE"
    "$PY" benchmarks/train_phase.py --base "$WORK/sd15" --device "$DEVICE" --resolution "$RES" --dtype "$DTYPE" \
        --method full --steps "$TSTEPS" --batch-size 2 --label "$LABEL" --json > "$RESULTS/train_full.json" \
        || { echo "gpu.sh: the full fine-tuning benchmark failed" >&2; rm -f "$RESULTS/train_full.json"; }
    TRAIN+=("$RESULTS/train_full.json")
fi

stage "done; JSON in $RESULTS"
"$PY" benchmarks/harness.py summary "$RESULTS/query.json" "${TRAIN[@]}"
if [ "$DRY" = 1 ]; then
    echo "(dry run: CPU, toy sizes; the ratios and targets above say nothing about a GPU)"
fi
