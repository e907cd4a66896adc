#!/usr/bin/env bash
# Sharded evaluation as a Slurm job array: 64 shards, at most 16 running. mila-infer reads its
# shard from SLURM_ARRAY_TASK_ID (normalised by SLURM_ARRAY_TASK_MIN and _STEP) and the count
# from SLURM_ARRAY_TASK_COUNT, and writes results/part-KKKKK-of-00064.json atomically.
# Afterwards: mila-infer merge results
#SBATCH --job-name=mila-eval
#SBATCH --array=0-63%16
#SBATCH --cpus-per-task=4
#SBATCH --gres=gpu:1
#SBATCH --time=01:00:00
#SBATCH --output=logs/mila-eval_%A_%a.out
set -euo pipefail
srun mila-infer eval /data/imagenet/val --model /models/mlla_t.pth --batch 32 --out results
