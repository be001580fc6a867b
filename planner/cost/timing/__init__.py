"""Step time of a training plan: compute, recompute, exposed communication, bubble, optimizer.

The model of docs/methodology.md §6: per micro-batch and pipeline stage, forward compute from
the layers' GEMM FLOPs on peak × η plus their memory-bound kernels (norms, residual adds, the
MLP activation and, for unfused attention, the s×s scores) at achieved HBM bandwidth; GEMM
backward = 2 × forward; recompute per policy; TP/EP collectives on the critical path; CP and DP
communication hidden behind compute up to an overlap fraction (ZeRO-3 layer by layer, prefetch
depth one; DeepSpeed's ZeRO-3 per parameter tensor and exposed, calibration.DEEPSPEED_ZERO3);
1F1B bubble (p−1)/v · (t_F + t_B), the slowest stage setting the pace. Constants
live in `planner.cost.calibration` (derived in validation/calibrate.py); collectives in
`planner.cost.comm`. Seconds and FLOPs throughout; validated in docs/validation.md.
"""
from planner.cost.comm import CommBytes
from planner.cost.timing.compute import COMPUTE_DTYPE, layer_efficiency
from planner.cost.timing.pipeline import (
           SCHEDULES,
           Schedule,
           bubble_fraction,
           default_schedule,
)
from planner.cost.timing.step import (
           MFU_PEAK_DTYPE,
           StageSeconds,
           TimeBreakdown,
           estimate_time,
           stage_seconds,
)

__all__ = ["COMPUTE_DTYPE", "MFU_PEAK_DTYPE", "SCHEDULES", "CommBytes", "Schedule", "StageSeconds", "TimeBreakdown",
           "bubble_fraction", "default_schedule", "estimate_time", "layer_efficiency", "stage_seconds"]
