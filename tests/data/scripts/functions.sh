#!/bin/bash
# Arguments assembled by functions, a loop and the script's own arguments.
add_args() {
    local name=$1
    shift
    ARGS+=("--$name" "$@")
}

NUM_LAYERS=${1:-32}
SEQ=$2
ARGS=()
add_args num-layers "$NUM_LAYERS"
add_args seq-length "${SEQ:-2048}"
for flag in bf16 use-flash-attn; do
    add_args "$flag"
done
for ((stage = 0; stage < 2; stage++)); do
    LAYOUT+="E,t|"
done

python pretrain_gpt.py "${ARGS[@]}" --pipeline-model-parallel-layout "${LAYOUT%|}"
