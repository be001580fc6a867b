"""The largest values a job may state: plain numbers, so that commands which only bound an
option (params, infer) read them without building the job's pydantic models."""

MAX_SEQ_LEN = 2**24
"""Tokens in one sequence, at most (16,777,216)."""
MAX_BATCH = 2**24
"""Sequences in one optimizer step, at most."""
MAX_STEP_TOKENS = 2**32
"""seq_len × global_batch, at most: 256 times the 16M tokens of Llama 3 405B's largest batch
(Llama 3 paper, arXiv 2407.21783, §3.4.1), and within the 64-bit bytes of its activations."""
MAX_TOKENS = 1e18
"""A training budget, at most (Llama 3 trained on 1.5e13 tokens)."""
MAX_RANK = 2**16
MAX_LIST = 1024
"""Entries of a list (ranks, targets, layers, a constraint's values)."""
MAX_LAYER_INDEX = 2**14
MAX_BOUND = 2**31
"""A constraint's min and max, at most this far from 0."""
