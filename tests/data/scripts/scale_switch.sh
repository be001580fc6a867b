#!/bin/bash
# GPT pretraining with a model-size switch and feature switches, after the pattern of Megatron-LM's
# examples/gpt3/train_gpt3_175b_distributed.sh and NeMo-style launch scripts.
set -euo pipefail

MODEL_SCALE="800M"
activation_checkpoint="false"
USE_FP8=${USE_FP8:-0}

GPUS_PER_NODE=8
NNODES=${NNODES:-4}
GPUS=$((NNODES*GPUS_PER_NODE))

case $MODEL_SCALE in
    800M)
        TP=1; PP=1
        NUM_LAYERS=24; HIDDEN_SIZE=1536; NUM_HEADS=16
        GBS=256
        ;;
    8B|8b)
        TP=4; PP=1
        NUM_LAYERS=32; HIDDEN_SIZE=4096; NUM_HEADS=32
        GBS=1024
        ;;
    *)
        echo "unknown MODEL_SCALE ${MODEL_SCALE}"
        exit 1
        ;;
esac

GPT_ARGS="--num-layers ${NUM_LAYERS} --hidden-size ${HIDDEN_SIZE} --num-attention-heads ${NUM_HEADS}"
GPT_ARGS+=" --seq-length 4096 --max-position-embeddings 4096"

PARALLEL_ARGS=(
    --tensor-model-parallel-size $TP
    --pipeline-model-parallel-size $PP   # one stage
)
if [ "$activation_checkpoint" = "true" ]; then
    PARALLEL_ARGS+=(--recompute-granularity full --recompute-method uniform)
fi
if [ "$USE_FP8" -eq 1 ]; then
    PARALLEL_ARGS+=(--fp8-format hybrid)
fi

TRAIN_ARGS=(--micro-batch-size 1 --global-batch-size $GBS --bf16)
DISTRIBUTED_ARGS="--nproc_per_node $GPUS_PER_NODE --nnodes $NNODES"

if [ $GPUS -ge 8 ]; then
    torchrun $DISTRIBUTED_ARGS pretrain_gpt.py \
        $GPT_ARGS \
        "${PARALLEL_ARGS[@]}" \
        "${TRAIN_ARGS[@]}" \
        --data-path "$DATA_PATH" 2>&1 | tee "train-${MODEL_SCALE}.log"
else
    echo "needs at least 8 GPUs, got $GPUS"
fi
