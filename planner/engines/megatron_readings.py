"""A Megatron-LM launch script read along the path it takes, and each way of a choice it makes on a
value that is not known (planner.engines.shell: UndecidedBranch) that would launch another plan.

`planner check --megatron` evaluates every such way, so that a script whose plan depends on an
environment variable says what each value gives (`--env KEY=VALUE` decides it).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from planner.cost.inputs import Inputs
from planner.engines import FrameworkJob
from planner.engines.megatron import megatron_job
from planner.engines.shell import Value, evaluate, parse
from planner.spec.errors import InputError
from planner.spec.reading import read_text

MAX_BRANCHES = 8
"""Undecided choices read the other way, in the order the script makes them (each is one more
reading of the script)."""


@dataclass(frozen=True)
class OtherWay:
    """Another way of an undecided choice, and what the script launches then."""

    line: int
    condition: str
    depends_on: tuple[str, ...]
    taken: str
    """The label of the way the main reading took."""
    label: str
    """This way: 'then', 'else', a case clause ..."""
    values: dict[str, Value | None]
    """The variables this way leaves that some way of the choice changes (None: unset)."""
    taken_values: dict[str, Value | None]
    """The same variables as the main reading leaves them."""
    job: FrameworkJob | None
    """The plan this way launches; None when it is bad input (`error`)."""
    error: str | None = None


def read_megatron(path: str | Path, inputs: Inputs, env: Mapping[str, str] | None = None
                  ) -> tuple[FrameworkJob, list[OtherWay]]:
    """The job the script launches along the way it is read, and the other ways of its undecided
    choices that launch a different plan or workload."""
    file = str(path)
    text = read_text(path)
    program = parse(text, file)
    script = evaluate(program, env)
    _, job = megatron_job(script, inputs, file)
    others = []
    for branch in script.branches[:MAX_BRANCHES]:
        for k, alternative in enumerate(branch.alternatives):
            if k == branch.taken or alternative.exits:
                continue
            other_script = evaluate(program, env, choices={branch.id: k})
            try:
                _, other = megatron_job(other_script, inputs, file)
                error = None
            except InputError as bad:
                other, error = None, bad.detail
            if other is not None and (other.plan, other.workload) == (job.plan, job.workload):
                continue
            others.append(OtherWay(line=branch.line, condition=branch.condition, depends_on=branch.depends_on,
                                   taken=branch.alternatives[branch.taken].label, label=alternative.label,
                                   values=dict(alternative.values),
                                   taken_values=dict(branch.alternatives[branch.taken].values), job=other,
                                   error=error))
    return job, others
