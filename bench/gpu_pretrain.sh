#!/usr/bin/env bash
# The product's recipe at a budget a 2-core CPU cannot reach (issue 11), in one command on a machine
# with a CUDA GPU and many cores: ImageNet EfficientNet-Lite0, then IMAGES streamed semgen samples,
# then the real training images (3 seeds, their ensemble, plain and --tta d4), beside ImageNet alone,
# with paired bootstrap differences on the test set. Resumable: re-run the same command (the
# pretraining continues from its last state, finished fine-tunes are not retrained).
#
#   REAL=../shared/data/sem-real/train TEST=../shared/data/sem-real/dev_test IMAGES=614400 \
#       bash bench/gpu_pretrain.sh
#
# Settings (environment): REAL, TEST (required); WORK (work dir, default out); IMAGES (streamed
# samples, default 614400 = 9,600 steps of 64); WORKERS (generator processes, default cores - 1);
# STOP_AFTER (pretraining step to stop at, to split the run over calls; default none); EPOCHS,
# SEEDS, SIZE, ARCH, LR (the session-20 fine-tuning recipe and session-26 pretraining recipe by
# default); RESULTS (where the figures go, default $WORK/gpu_pretrain). On a CPU it runs too (slowly):
# IMAGES=64 EPOCHS=1 SIZE=64 SEEDS="0 1" is a smoke run of the plumbing.
# JOINT=1: joint pretraining instead (the real images in every pretraining batch, the runs are the
# models: semgen recipe --pretrain-real-fraction 0.25 --no-finetune), ImageNet alone fine-tuned at
# FT_SIZE (default 224) beside it; at IMAGES=76800 one run per seed is a few minutes on 16 cores.
# Figures: RESULTS/summary.txt (every table printed), RESULTS/*.jsonl; the pretrained backbone as
# float16 in RESULTS/backbone_fp16.safetensors (under 16 MB, so a lent machine's $OUT brings it back).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${REAL:?set REAL to the real training images}" "${TEST:?set TEST to the real test images}"
WORK=${WORK:-out}
IMAGES=${IMAGES:-614400}
WORKERS=${WORKERS:-$(( $(nproc) > 1 ? $(nproc) - 1 : 1 ))}
EPOCHS=${EPOCHS:-10}
SEEDS=${SEEDS:-0 1 2}
SIZE=${SIZE:-128}
ARCH=${ARCH:-efficientnet_lite0}
LR=${LR:-5e-4}
RESULTS=${RESULTS:-$WORK/gpu_pretrain}
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
PT=$WORK/pt/${ARCH}_in_fine_${IMAGES}_s${SIZE}
FT=$WORK/ft_gpu
mkdir -p "$RESULTS"
log() { echo "== $(date -u +%H:%M:%S) $*" | tee -a "$RESULTS/summary.txt"; }

if [ "${JOINT:-0}" = 1 ]; then
  # Joint pretraining (docs/recipe.md): a quarter of each batch from REAL, one run per seed, the runs
  # themselves the models and their ensemble; ImageNet alone fine-tuned at FT_SIZE beside them.
  J=$WORK/recipe_joint_${IMAGES}_s${SIZE}
  log "joint pretraining -> $J: $ARCH from ImageNet, $IMAGES samples per seed ($SEEDS), REAL at 0.25 of each batch"
  for TTA in none d4; do
    $PY -m semgen.cli recipe --real "$REAL" --out "$J" --test "$TEST" --tta $TTA --arch "$ARCH" --images "$IMAGES" \
        --size "$SIZE" --pretrain-lr "$LR" --pretrain-real-fraction 0.25 --no-finetune --seeds $SEEDS --baseline \
        --finetune-size "${FT_SIZE:-224}" --epochs "$EPOCHS" --workers "$WORKERS" --no-progress \
        ${STOP_AFTER:+--stop-after "$STOP_AFTER"} | tee -a "$RESULTS/summary.txt"
    [ -f "$J/summary.md" ] || { log "stopped as asked: run the same command again to continue"; exit 0; }
    cp "$J/summary.md" "$RESULTS/recipe_joint_tta-$TTA.md"
    log "paired difference, tta $TTA: ImageNet alone (ensemble) -> the joint runs' ensemble"
    $PY bench/compare_runs.py --test "$TEST" --saved --tta $TTA --a "$J/baseline_ensemble" --b "$J/ensemble" \
        | tee -a "$RESULTS/summary.txt"
  done
  log "done: $RESULTS/summary.txt"
  exit 0
fi

log "device: $($PY -c 'import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")'), $WORKERS workers"
log "pretrain $PT: $ARCH from ImageNet, $IMAGES streamed samples"
$PY -m semgen.cli pretrain --out "$PT" --arch "$ARCH" --init imagenet --images "$IMAGES" --size "$SIZE" \
    --lr "$LR" --workers "$WORKERS" --no-progress ${STOP_AFTER:+--stop-after "$STOP_AFTER"} \
    | tee "$RESULTS/pretrain.json"
$PY - "$PT" "$RESULTS" <<'EOF' | tee -a "$RESULTS/summary.txt"
import json, sys
from pathlib import Path
from safetensors.torch import load_file, save_file
run, res = Path(sys.argv[1]), Path(sys.argv[2])
log = [json.loads(l) for l in (run / "train_log.jsonl").read_text().splitlines() if l.strip()]
ips = sorted(r["images_per_s"] for r in log if r.get("images_per_s"))
print(f"pretraining: step {log[-1]['step']}, loss {log[-1]['loss']:.3f}, fine accuracy {log[-1]['fine_accuracy']:.3f}, "
      f"median {ips[len(ips) // 2]:.0f} images/s")
w = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in load_file(str(run / "model.safetensors")).items()}
save_file(w, str(res / "backbone_fp16.safetensors"))
(res / "backbone_config.json").write_text((run / "config.json").read_text())
EOF
if [ -n "${STOP_AFTER:-}" ] && ! grep -q '"done": true' "$RESULTS/pretrain.json"; then
  log "stopped at step $STOP_AFTER as asked: run the same command without STOP_AFTER to finish"; exit 0
fi

log "no real image: the pretraining run itself on $TEST"
$PY -m semgen.cli evaluate "$PT" --data "$TEST" | head -n 1 | tee -a "$RESULTS/summary.txt"

log "fine-tune on $REAL ($EPOCHS epochs, seeds $SEEDS), ImageNet alone beside it; plain, then --tta d4"
for TTA in none d4; do
  $PY bench/pretrain_finetune.py --real "$REAL" --test "$TEST" --out "$FT" --epochs "$EPOCHS" --size "$SIZE" \
      --seeds $SEEDS --recipe r1 --val-fraction 0 --head-only-epochs 1 --ensemble --tta $TTA \
      --init "lite0_imagenet=imagenet@$ARCH" --init "lite0_imagenet_semgen${IMAGES}=$PT@$ARCH" \
      | tee -a "$RESULTS/summary.txt"
done
cp "$FT/results.jsonl" "$RESULTS/finetune.jsonl"

ENS="ens_s$(echo $SEEDS | tr ' ' '-')"
for TTA in none d4; do
  log "paired differences, tta $TTA: ImageNet -> ImageNet then semgen (seeds, then the ensembles)"
  $PY bench/compare_runs.py --test "$TEST" --saved --tta $TTA \
      --a $(for s in $SEEDS; do printf '%s ' "$FT/lite0_imagenet_r1_all_s$s"; done) \
      --b $(for s in $SEEDS; do printf '%s ' "$FT/lite0_imagenet_semgen${IMAGES}_r1_all_s$s"; done) \
      | tee -a "$RESULTS/summary.txt"
  $PY bench/compare_runs.py --test "$TEST" --saved --tta $TTA --a "$FT/lite0_imagenet_r1_all_$ENS" \
      --b "$FT/lite0_imagenet_semgen${IMAGES}_r1_all_$ENS" | tee -a "$RESULTS/summary.txt"
done
log "done: $RESULTS/summary.txt"
