#!/usr/bin/env bash
# Run the comparison grid (datasets x methods x {without, with COST} x seeds) through Hydra
# multirun, then write the tables (results/tables/) and plots (results/plots/).
#
#   PROFILE=quick (default): a reduced grid on data that needs no manual download, sized
#                            for a CPU machine (see the QUICK_* lists below).
#   PROFILE=paper:           the published protocol, for GPUs: NYUv2, Cityscapes, CelebA and
#                            QM9, 13 methods, with and without COST, 3 seeds.
#
# Optional environment variables:
#   DATASETS     space-separated datasets, replacing the profile's list
#   METHODS      comma-separated methods for every dataset, replacing the profile's lists
#   SEEDS        comma-separated seeds, replacing the profile's list
#   COST         the COST preset of the "with COST" runs (configs/cost/<COST>.yaml)
#   LAUNCHER     Hydra launcher: empty runs one run at a time; local_joblib, local_submitit
#                or slurm (configs/launcher/) run several at once
#   RESULTS      results folder (default: results)
#   PYTHON       Python interpreter with the suite installed (default: python on PATH)
# Extra arguments go to every multirun unchanged, e.g. hydra.launcher.partition=gpu or
# logger=csv.
#
# Finished runs (summary.csv present) are skipped and unfinished ones resume from their
# checkpoint, so running the same command again completes an interrupted grid.
set -euo pipefail

# ---- The grids -----------------------------------------------------------------------
ALL_METHODS="ls,si,rlw,dwa,uw,mgda,graddrop,pcgrad,cagrad,imtl_g,nashmtl,famo,fairgrad"

PAPER_DATASETS="nyuv2 cityscapes celeba qm9"
PAPER_METHODS="$ALL_METHODS"
PAPER_SEEDS="0,1,2"
PAPER_COST="paper"

# Quick profile: QM9 (2,000 molecules of the installed qm9pack, 3 epochs) and the 2-D toy
# problem, each with and without COST, one seed. On a 2-core CPU a QM9 run with COST takes
# most of the time, because the trigger needs the 11-task Jacobian at every step until the
# epoch's teleport. FairGrad, which needs that Jacobian at every step, is left out for that
# reason, and the toy list keeps to methods with cheap steps.
QUICK_DATASETS="qm9 toy"
QUICK_METHODS_QM9="ls"
QUICK_METHODS_TOY="ls,pcgrad"
QUICK_SEEDS="0"
QUICK_COST="quick"

# The toy model's only parameter is a point that no PEFT adapter can wrap. So in every
# profile the toy uses its own COST preset, which teleports the point by a dense displacement.
TOY_COST="toy"
# ---------------------------------------------------------------------------------------

PROFILE="${PROFILE:-quick}"
RESULTS="${RESULTS:-results}"
PYTHON="${PYTHON:-python}"
LAUNCHER="${LAUNCHER:-}"

case "$PROFILE" in
  paper)
    datasets="${DATASETS:-$PAPER_DATASETS}"
    seeds="${SEEDS:-$PAPER_SEEDS}"
    cost_preset="${COST:-$PAPER_COST}"
    ;;
  quick)
    datasets="${DATASETS:-$QUICK_DATASETS}"
    seeds="${SEEDS:-$QUICK_SEEDS}"
    cost_preset="${COST:-$QUICK_COST}"
    ;;
  *)
    echo "error: PROFILE=$PROFILE is not a known profile; use PROFILE=quick or PROFILE=paper" >&2
    exit 2
    ;;
esac

methods_for() {
  if [[ -n "${METHODS:-}" ]]; then
    echo "$METHODS"
  elif [[ "$PROFILE" == paper ]]; then
    echo "$PAPER_METHODS"
  else
    case "$1" in
      qm9) echo "$QUICK_METHODS_QM9" ;;
      toy) echo "$QUICK_METHODS_TOY" ;;
      *) echo "$ALL_METHODS" ;;
    esac
  fi
}

costs_for() {
  if [[ "$1" == toy && -z "${COST:-}" ]]; then
    echo "none,$TOY_COST"
  else
    echo "none,$cost_preset"
  fi
}

launcher_args=()
if [[ -n "$LAUNCHER" ]]; then
  launcher_args=("hydra/launcher=$LAUNCHER")
fi

started=$(date +%s)
failed=()
for dataset in $datasets; do
  echo "== $dataset: methods $(methods_for "$dataset"), cost $(costs_for "$dataset"), seeds $seeds, profile $PROFILE"
  # A failed run must not stop the other datasets; the failure is reported at the end.
  if ! "$PYTHON" -m benchmarks.train --multirun \
      dataset="$dataset" profile="$PROFILE" method="$(methods_for "$dataset")" \
      cost="$(costs_for "$dataset")" seed="$seeds" results_dir="$RESULTS" \
      ${launcher_args[@]+"${launcher_args[@]}"} "$@"; then
    failed+=("$dataset")
  fi
done

"$PYTHON" -m benchmarks.tables --results "$RESULTS" --wandb
"$PYTHON" -m benchmarks.plots --results "$RESULTS"

echo "== grid finished in $(( $(date +%s) - started )) s; tables in $RESULTS/tables, plots in $RESULTS/plots"
if (( ${#failed[@]} )); then
  echo "error: some runs of ${failed[*]} failed; their logs are in $RESULTS/runs/<dataset>/$PROFILE/*/seed*/train.log." \
       "Run the same command again to retry them." >&2
  exit 1
fi
