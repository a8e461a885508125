#!/usr/bin/env bash
# CelebA (40 binary attributes) with the published protocol (profile paper): 13 methods, each without
# and with COST (preset paper), seeds 0, 1 and 2, then the tables and plots.
# Extra arguments go to Hydra, e.g.
#   bash benchmarks/scripts/celeba.sh hydra/launcher=slurm hydra.launcher.partition=gpu
# The environment variables of reproduce_table.sh (METHODS, SEEDS, COST, LAUNCHER, RESULTS)
# apply here too.
set -euo pipefail
PROFILE=paper DATASETS=celeba exec bash "$(dirname "$0")/reproduce_table.sh" "$@"
