"""The table both solvers read: the candidate plans as layouts with integer coefficients
(layouts.py), and the cluster's capacities in the same units (KiB).

A large table is built by several worker processes (parallel.py): the cost models are pure
Python, so a second core helps only through a second process. The plans are split by screening
group (TableBuilder.group), whose plans read only one another's screening, so each worker makes
exactly the layouts a serial build makes; the deferred plans (offload) follow once every
worker has said which layouts fit without offload, and the layouts are put back in the serial
order.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

from planner.cost import memo
from planner.cost.cluster import Cluster
from planner.cost.plan import Plan
from planner.cost.workload import Workload
from planner.search.layouts import KiB, Layout, TableBuilder, build_layouts, plan_values
from planner.search.objectives import OBJECTIVES

__all__ = ["OBJECTIVES", "Layout", "build_table", "capacity_kib", "host_capacity_kib", "plan_values"]

PARALLEL_PLANS = 4000
"""Candidate plans from which a table is worth worker processes: a few hundred milliseconds of
models at least, against tens for starting the workers and sending the layouts back."""
TASK_PLANS = 500
"""Plans per worker task, about: small enough for the progress bar to move and the workers to
share the load evenly, large enough that sending each task its inputs costs little."""


def build_table(plans: Iterable[Plan], workload: Workload, cluster: Cluster, objective: str = "step-time",
                progress: Callable[[int], None] | None = None, screen: bool = True, jobs: int = 1) -> list[Layout]:
    """Layouts of the given candidate plans; `screen`: see layouts.TableBuilder. The model terms
    that read few plan keys are computed once for the table (planner/cost/memo.py). `jobs` > 1:
    in that many worker processes when the table is large (never from inside a worker)."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; valid: {', '.join(OBJECTIVES)}")
    if jobs > 1:
        plans = list(plans)
        if worth_workers(len(plans)):
            return _build_in_workers(plans, workload, cluster, objective, progress, screen, jobs)
    with memo.session():
        return build_layouts(plans, workload, cluster, objective, progress, screen)


def worth_workers(plans: int) -> bool:
    """Whether a table of this many candidate plans is worth building in worker processes."""
    return plans >= PARALLEL_PLANS


def _build_in_workers(plans: list[Plan], workload: Workload, cluster: Cluster, objective: str,
                      progress: Callable[[int], None] | None, screen: bool, jobs: int) -> list[Layout]:
    from planner.search.parallel import Workers

    builder = TableBuilder(workload, cluster, objective, screen)
    first, deferred = builder.phases(plans)
    made: dict[int, list[Layout]] = {}
    done = 0
    with Workers(jobs) as workers:
        for phase in (first, deferred):
            tasks = _tasks(phase, plans)
            for t, task in enumerate(tasks):
                # A deferred plan reads whether its layout without offload fits (builder.fits).
                fits = {key for i in task if (key := plans[i].with_(offload="none").key()) in builder.fits}
                workers.submit(t, _build_task, [plans[i] for i in task], workload, cluster, objective, screen, fits)
            for t, (layouts, fits) in workers.results():
                made.update(zip(tasks[t], layouts))
                builder.fits |= fits
                done += len(tasks[t])
                if progress is not None:
                    progress(done)
    return [layout for i in first + deferred for layout in made[i]]


def _tasks(indices: list[int], plans: list[Plan]) -> list[list[int]]:
    """The plans at `indices` in tasks of whole screening groups, about TASK_PLANS plans each,
    each task's plans in their order."""
    groups: dict[tuple, list[int]] = {}
    for i in indices:
        groups.setdefault(TableBuilder.group(plans[i]), []).append(i)
    tasks: list[list[int]] = []
    for members in groups.values():
        if not tasks or len(tasks[-1]) >= TASK_PLANS:
            tasks.append([])
        tasks[-1].extend(members)
    return [sorted(task) for task in tasks]


def _build_task(plans: list[Plan], workload: Workload, cluster: Cluster, objective: str, screen: bool,
                fits: set[tuple]) -> tuple[list[list[Layout]], set[tuple]]:
    """Each plan's layouts, in a worker, and the layouts (offload none) found to fit; `fits`:
    those known to fit before."""
    builder = TableBuilder(workload, cluster, objective, screen)
    builder.fits = fits
    return [builder.add(plan) for plan in plans], builder.fits


def capacity_kib(cluster: Cluster) -> int:
    return cluster.capacity // KiB


def host_capacity_kib(cluster: Cluster) -> int | None:
    return None if cluster.host_memory is None else cluster.host_memory // KiB
