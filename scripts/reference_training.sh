#!/usr/bin/env bash
# The training runs behind MODEL_CARD.md: DNANet-ResNet18 with the paper's protocol (Soft-IoU with deep
# supervision, Adagrad lr 0.05 constant, batch 16, 256x256 crops, paper augmentation) on NUDT-SIRST,
# NUAA-SIRST and a 4,000-image synthesized set, the three runs side by side on one GPU, each stopped
# after a wall-time budget. Checkpoints are selected on a validation split carved from train
# (--val-fraction 0.1), never on test.
#
# Usage: scripts/reference_training.sh NUDT_ROOT NUAA_ROOT RUNS_DIR MINUTES
# RESUME=1 continues every run from RUNS_DIR/<name>/last.pt; RUNS="nudt nuaa" picks runs (default: all three).
# Then: python scripts/bundle_weights.py RUNS_DIR/<name>/best.pt --name <name>
set -euo pipefail
nudt=$1 nuaa=$2 runs=$3 minutes=$4
py=${PYTHON:-python3}
device=${DEVICE:-cuda}
resume=()
[ "${RESUME:-0}" = 1 ] && resume=(--resume)
common=(--device "$device" --amp --channels-last --workers 6 --val-fraction 0.1 --eval-every 5 --epochs 1500
        --max-minutes "$minutes" --seed 0 "${resume[@]}")
mkdir -p "$runs"
launch() {  # name, then the command; detached so it outlives the shell that started it
    local name=$1; shift
    setsid nohup "$@" > "$runs/$name.log" 2> "$runs/$name.err" < /dev/null &
    echo "$!" > "$runs/$name.pid"
}
wanted=" ${RUNS:-nudt nuaa synth} "
[[ $wanted == *" nudt "* ]] && launch nudt $py -m sirst train --data "$nudt" --out "$runs/nudt" "${common[@]}"
[[ $wanted == *" nuaa "* ]] && launch nuaa $py -m sirst train --data "$nuaa" --out "$runs/nuaa" "${common[@]}"
if [[ $wanted == *" synth "* ]]; then
    if [ ! -f "$runs/synth_data/50_50/test.txt" ]; then
        $py -m sirst synth --out "$runs/synth_data" --num 4000 --seed 1 --workers 4 > "$runs/synth_data.log" 2>&1
    fi
    launch synth $py -m sirst train --data "$runs/synth_data" --out "$runs/synth" "${common[@]}"
fi
echo "launched: $(cat "$runs"/*.pid | tr '\n' ' ')"
