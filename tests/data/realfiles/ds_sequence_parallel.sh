#!/bin/bash
# After Megatron-DeepSpeed examples_deepspeed/sequence_parallel/ds_pretrain_gpt_1.3B_seq_parallel_32k.sh:
# DeepSpeed-Ulysses over 4 GPUs of each node, no pipeline.
seq_len=32768
num_layers=24
hidden_size=2048
num_attn_heads=16
global_batch_size=8
mp_size=1
pp_size=1
no_pp="true"
zero_stage=3
sp_size=4
batch_size=1
num_gpus=8

megatron_options=" \
    --tensor-model-parallel-size ${mp_size} \
    --ds-sequence-parallel-size ${sp_size} \
    --pipeline-model-parallel-size ${pp_size} \
    --init-method-std 0.013 \
    --micro-batch-size ${batch_size} \
    --global-batch-size ${global_batch_size} \
    --num-layers ${num_layers} \
    --hidden-size ${hidden_size} \
    --num-attention-heads ${num_attn_heads} \
    --seq-length ${seq_len} \
    --max-position-embeddings ${seq_len} \
    --bf16 \
    --use-flash-attn-v2"

deepspeed_options=" \
    --deepspeed \
    --deepspeed_config ds_config_gbs${global_batch_size}.json \
    --zero-stage ${zero_stage}"

if [[ "${no_pp}" = "true" ]]; then
deepspeed_options="${deepspeed_options} \
    --no-pipeline-parallel"
fi

deepspeed --num_gpus ${num_gpus} pretrain_gpt.py ${megatron_options} ${deepspeed_options}
