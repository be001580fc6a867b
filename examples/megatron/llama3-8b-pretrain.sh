#!/bin/bash
# Llama-3-8B pretraining with Megatron-LM on 8 nodes of 8 H100 (after Megatron-LM's
# examples/llama/train_llama3_8b_h100_fp8.sh, in bf16): TP 2 with sequence parallelism,
# the distributed optimizer, selective recompute, 512 x 8192 tokens per step.
#
#   planner check examples/clusters/h100-8nodes-ib.yaml examples/jobs/llama3-8b-pretrain.yaml \
#       --megatron examples/megatron/llama3-8b-pretrain.sh
#
# Usage on each node: NODE_RANK=<i> MASTER_ADDR=<first node> bash llama3-8b-pretrain.sh CKPT TB TOKENIZER DATA

set -euo pipefail
export CUDA_DEVICE_MAX_CONNECTIONS=1

CHECKPOINT_PATH=${1:-checkpoints/llama3-8b}
TENSORBOARD_LOGS_PATH=${2:-tensorboard/llama3-8b}
TOKENIZER_MODEL=${3:-meta-llama/Meta-Llama-3-8B}
DATA_PATH=${4:-data/fineweb_text_document}

GPUS_PER_NODE=8
NUM_NODES=${NUM_NODES:-8}
MASTER_ADDR=${MASTER_ADDR:-localhost}
MASTER_PORT=${MASTER_PORT:-6000}
NODE_RANK=${NODE_RANK:-0}
WORLD_SIZE=$((GPUS_PER_NODE * NUM_NODES))

TP=2
PP=1
CP=1
MBS=1
GBS=512
SEQ_LEN=8192

DISTRIBUTED_ARGS=(
    --nproc_per_node $GPUS_PER_NODE
    --nnodes $NUM_NODES
    --node_rank $NODE_RANK
    --master_addr $MASTER_ADDR
    --master_port $MASTER_PORT
)

MODEL_ARGS=(
    --use-mcore-models
    --num-layers 32
    --hidden-size 4096
    --ffn-hidden-size 14336
    --num-attention-heads 32
    --group-query-attention
    --num-query-groups 8
    --kv-channels 128
    --seq-length $SEQ_LEN
    --max-position-embeddings $SEQ_LEN
    --position-embedding-type rope
    --rotary-base 500000
    --rotary-percent 1.0
    --normalization RMSNorm
    --swiglu
    --untie-embeddings-and-output-weights
    --disable-bias-linear
    --attention-dropout 0.0
    --hidden-dropout 0.0
    --transformer-impl transformer_engine
    --vocab-size 128256   # the tokenizer's size (Megatron pads it to a multiple of 128 x TP)
)

TRAINING_ARGS=(
    --micro-batch-size $MBS
    --global-batch-size $GBS
    --train-samples 1953125000
    --lr 3.0e-4
    --min-lr 3.0e-5
    --lr-decay-style cosine
    --lr-warmup-samples 2048000
    --weight-decay 0.1
    --adam-beta1 0.9
    --adam-beta2 0.95
    --clip-grad 1.0
    --init-method-std 0.01
    --bf16
    --use-distributed-optimizer
    --overlap-grad-reduce
    --overlap-param-gather
    --recompute-granularity selective
)

MODEL_PARALLEL_ARGS=(
    --tensor-model-parallel-size $TP
    --pipeline-model-parallel-size $PP
    --context-parallel-size $CP
    --sequence-parallel
)

DATA_ARGS=(
    --data-path $DATA_PATH
    --tokenizer-type HuggingFaceTokenizer
    --tokenizer-model $TOKENIZER_MODEL
    --split 99,1,0
)

EVAL_AND_LOGGING_ARGS=(
    --log-interval 10
    --save-interval 1000
    --eval-interval 1000
    --eval-iters 10
    --save $CHECKPOINT_PATH
    --load $CHECKPOINT_PATH
    --tensorboard-dir $TENSORBOARD_LOGS_PATH
    --log-throughput
)

torchrun ${DISTRIBUTED_ARGS[@]} pretrain_gpt.py \
    ${MODEL_ARGS[@]} \
    ${TRAINING_ARGS[@]} \
    ${MODEL_PARALLEL_ARGS[@]} \
    ${DATA_ARGS[@]} \
    ${EVAL_AND_LOGGING_ARGS[@]} 2>&1 | tee train_llama3_8b_${NODE_RANK}.log
