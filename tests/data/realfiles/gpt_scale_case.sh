#!/bin/bash
# The case of Megatron-LM examples/mamba/train.sh on a GPT launch: MODEL_SCALE picks TP and batch.
MODEL_SCALE="8B" # or "800M"

case "${MODEL_SCALE}" in
    "800M")
        TENSOR_MODEL_PARALLEL_SIZE=1
        GLOBAL_BATCH_SIZE=32
        ;;
    "8B")
        TENSOR_MODEL_PARALLEL_SIZE=4
        GLOBAL_BATCH_SIZE=64
        ;;
    *)
        echo "Invalid version specified"
        exit 1
        ;;
esac

torchrun --nproc_per_node 8 --nnodes 1 pretrain_gpt.py \
    --tensor-model-parallel-size ${TENSOR_MODEL_PARALLEL_SIZE} --sequence-parallel \
    --pipeline-model-parallel-size 1 --use-distributed-optimizer \
    --num-layers 32 --hidden-size 4096 --ffn-hidden-size 14336 --num-attention-heads 32 \
    --group-query-attention --num-query-groups 8 --swiglu --normalization RMSNorm \
    --position-embedding-type rope --disable-bias-linear --untie-embeddings-and-output-weights \
    --seq-length 8192 --micro-batch-size 1 --global-batch-size ${GLOBAL_BATCH_SIZE} --bf16 \
    --attention-dropout 0 --hidden-dropout 0 --vocab-size 128256
