#!/usr/bin/env bash
# voxtrace eval as a Slurm job array: one array task per shard, then one merge job.
#
#   sbatch --array=1-8 scripts/slurm_eval.sh MANIFEST RUN_ID [voxtrace eval args...]
#   # when every task is done (or chain it: sbatch --dependency=afterok:<array job id> ...):
#   voxtrace eval-merge reports/RUN_ID-shard-*-of-8 --out reports --run-id RUN_ID
#
# Each task runs `voxtrace eval --shard auto`, which reads SLURM_ARRAY_TASK_ID,
# SLURM_ARRAY_TASK_MIN/STEP and SLURM_ARRAY_TASK_COUNT (so --array=0-7 works as well as 1-8).
# The checkout, the corpus and reports/ must be on a file system every node sees. Set VOXTRACE
# to the binary (default target/release/voxtrace, built once before submitting).
#SBATCH --job-name=voxtrace-eval
#SBATCH --cpus-per-task=2
#SBATCH --mem=8G
#SBATCH --output=reports/slurm-%A_%a.log
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: sbatch --array=1-N $0 MANIFEST RUN_ID [voxtrace eval args...]" >&2
    exit 2
fi
manifest=$1 run_id=$2
shift 2
: "${SLURM_ARRAY_TASK_ID:?not a Slurm array task: submit with sbatch --array=1-N}"
count=${SLURM_ARRAY_TASK_COUNT:?}
min=${SLURM_ARRAY_TASK_MIN:-1}
step=${SLURM_ARRAY_TASK_STEP:-1}
k=$(( (SLURM_ARRAY_TASK_ID - min) / step + 1 ))
exec "${VOXTRACE:-target/release/voxtrace}" eval --shard auto --manifest "$manifest" \
    --run-id "$run_id-shard-$k-of-$count" --out reports --quiet "$@"
