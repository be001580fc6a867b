#!/bin/bash
# A switch on a variable the script does not set: full recompute when RECOMPUTE=1 is exported.
ARGS=(
    --tensor-model-parallel-size 1 --pipeline-model-parallel-size 1 --use-distributed-optimizer
    --num-layers 32 --hidden-size 4096 --ffn-hidden-size 14336 --num-attention-heads 32
    --group-query-attention --num-query-groups 8 --swiglu --normalization RMSNorm
    --position-embedding-type rope --disable-bias-linear --untie-embeddings-and-output-weights
    --seq-length 8192 --micro-batch-size 2 --global-batch-size 64 --bf16
    --attention-dropout 0 --hidden-dropout 0 --vocab-size 128256
)
if [ "$RECOMPUTE" = "1" ]; then
    ARGS+=(--recompute-granularity full --recompute-method uniform)
fi
torchrun --nproc_per_node 8 pretrain_gpt.py "${ARGS[@]}"
