#!/usr/bin/env bash
# Train a polyhead config on 2 nodes x 8 GPUs with SLURM: one `accelerate launch` per node, 16 processes in all.
#
#   sbatch examples/slurm_train.sh configs/forecasting/patchtst_co2.py [KEY=VALUE ...]   (e.g. train.precision=bf16)
#
# KEY=VALUE pairs are --cfg-options of `polyhead train`; OUTPUT_DIR (environment) names the run folder.
#
# Preemption: SLURM sends SIGTERM 120 s before the time limit (--signal); polyhead finishes the current step,
# writes a checkpoint and exits with 143; the job is requeued (--requeue) and continues with --resume.
# train.batch_size is per process: the global batch is batch_size x 16 x train.grad_accum.
#SBATCH --job-name=polyhead
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=64
#SBATCH --time=24:00:00
#SBATCH --signal=TERM@120
#SBATCH --requeue
#SBATCH --output=slurm-%x-%j.out
set -euo pipefail

CONFIG=${1:?usage: sbatch examples/slurm_train.sh CONFIG [KEY=VALUE ...]}
shift
GPUS_PER_NODE=8
OUTPUT_DIR=${OUTPUT_DIR:-runs/slurm-${SLURM_JOB_ID}}
MAIN_HOST=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | sed -n 1p)  # sed reads all: no SIGPIPE under pipefail
MAIN_PORT=${MAIN_PORT:-29500}

RESUME=()
if [ -d "$OUTPUT_DIR/checkpoints" ]; then  # a requeued job continues from its newest checkpoint
  RESUME=(--resume)
fi

# DataLoader workers per process: train.num_workers defaults to min(4, cores / (2 x 8)) on each node.
export OMP_NUM_THREADS=4
export HF_HUB_OFFLINE=1  # download weights and data before the job: compute nodes are often offline

# SLURM_NODEID is expanded on each node (single quotes), so every node gets its own --machine_rank.
# shellcheck disable=SC2016
srun --kill-on-bad-exit=1 bash -c '
  accelerate launch \
    --multi_gpu \
    --num_machines "$SLURM_NNODES" \
    --num_processes $(( SLURM_NNODES * '"$GPUS_PER_NODE"' )) \
    --machine_rank "$SLURM_NODEID" \
    --main_process_ip '"$MAIN_HOST"' \
    --main_process_port '"$MAIN_PORT"' \
    --rdzv_backend static \
    --same_network \
    -m polyhead train "$@"
' polyhead-train "$CONFIG" "${RESUME[@]}" --cfg-options "train.output_dir=$OUTPUT_DIR" "$@"
