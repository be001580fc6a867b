"""Pipeline schedules and their bubbles: 1F1B, interleaved, ZB-H1, DualPipe."""
from __future__ import annotations

from typing import Literal

from planner.cost.plan import Plan, PlanError

Schedule = Literal["1f1b", "interleaved", "zb-h1", "dualpipe"]
SCHEDULES: tuple[Schedule, ...] = ("1f1b", "interleaved", "zb-h1", "dualpipe")
"""Pipeline schedules the bubble is modelled for: 1F1B (PipeDream-Flush) [MEG21 §2.2.1];
interleaved 1F1B with vpp chunks per rank [MEG21 §2.2.2]; ZB-H1, zero-bubble with backward split
into input (B) and weight (W) gradients at 1F1B's memory [ZB] arXiv 2401.10241 §3; DualPipe,
bidirectional with forward/backward chunks overlapped (DeepSeek-V3 arXiv 2412.19437 §3.2.1)."""


def bubble_fraction(schedule: Schedule, p: int, m: int, v: int = 1, w_share: float = 1 / 3) -> float:
    """Pipeline idle time of a step / its ideal time m·(t_F + t_B), for one schedule.

    `w_share` = t_W / (t_F + t_B): the weight-gradient share of a micro-batch's work (1/3 when
    the forward, input-gradient and weight-gradient passes take the same time). In units of one
    micro-batch's work, F + B_in + W = 1 with F = B_in = (1 − w)/2 and the full backward B = B_in + W:
    - 1F1B: (p−1)·(F + B)/m [MEG21 eq. 1]; interleaved: (p−1)/(v·m) [MEG21 §2.2.2].
    - ZB-H1: (p−1)·(F + B − 2W)/m ([ZB] §3; DeepSeek-V3 Table 2 "ZB1P"), 1/3 of 1F1B at equal
      passes; LoRA's frozen weights have no W pass (w = 0) and get 1F1B's bubble.
    - DualPipe: (p/2 − 1)·(F&B + B − 3W)/m (DeepSeek-V3 Table 2), F&B — a forward and a backward
      chunk overlapped — taken as F + B (the pairing hides communication, not compute); p even.
    The idle time does not depend on m, so the fraction never rises with more micro-batches.
    """
    if p <= 1:
        return 0.0
    if schedule == "1f1b":
        return (p - 1) / m
    if schedule == "interleaved":
        return (p - 1) / (v * m)
    w = min(max(w_share, 0.0), 0.5)
    backward = (1 - w) / 2 + w  # B: input + weight gradients
    if schedule == "zb-h1":
        return (p - 1) * (1 - 2 * w) / m
    if schedule == "dualpipe":
        return max(0, p // 2 - 1) * (1 + backward - 3 * w) / m
    raise ValueError(f"unknown pipeline schedule {schedule!r}; valid: {', '.join(SCHEDULES)}")


def default_schedule(plan: Plan) -> Schedule:
    """What Megatron-LM runs for a plan: interleaved 1F1B when vpp > 1, else 1F1B."""
    return "interleaved" if plan.vpp > 1 else "1f1b"


def check_schedule(plan: Plan, schedule: Schedule) -> None:
    if schedule not in SCHEDULES:
        raise PlanError(f"unknown pipeline schedule {schedule!r}; valid: {', '.join(SCHEDULES)}")
    if schedule != "interleaved" and plan.vpp > 1:
        raise PlanError(f"vpp({plan.vpp}) > 1 is the interleaved schedule, not {schedule}")
    if schedule == "dualpipe" and plan.pp % 2:
        raise PlanError(f"DualPipe runs the pipeline from both ends: pp({plan.pp}) must be even")
