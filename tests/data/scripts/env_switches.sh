#!/bin/bash
# Switches the launching environment sets: sequence parallelism, logging, the cluster.
if [ "$ENABLE_SP" = "1" ]; then
    TP=4
    EXTRA=(--sequence-parallel)
else
    TP=2
    EXTRA=()
fi

[ -n "$WANDB_API_KEY" ] && LOGGING=(--wandb-project demo)

case "$CLUSTER" in
    eos) MBS=2 ;;
    *) MBS=1 ;;
esac

mkdir -p "$CHECKPOINTS" || exit 1

torchrun --nproc-per-node 8 pretrain_gpt.py \
    --tensor-model-parallel-size $TP "${EXTRA[@]}" \
    --micro-batch-size $MBS "${LOGGING[@]}"
