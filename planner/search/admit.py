"""Which plans of a layout pass every rule, each rule checked once per combination of the values it reads.

The rules (planner/engines/rules.py, and each engine profile's `checks`) name the plan keys they
read (`Rule.reads`). A layout fixes the parallel degrees and the partition; the search then varies
the execution keys in groups (space.py `EXECUTION_KEYS`: the micro-batch with its count, sp,
ZeRO ...), and a rule's verdict is known as soon as the last group it reads is chosen. So a rule
is checked there, and once per combination of the values it reads: its verdicts are kept for the
whole enumeration, and a value that breaks a rule drops every combination that would extend it.
The plans admitted are those `plan_problems` and the engine's `problems` pass, in the same order
(tests/test_space.py holds it).
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from operator import itemgetter

from planner.cost.cluster import Cluster
from planner.cost.plan import Plan
from planner.cost.workload import Workload
from planner.engines.rules import Rule


class Admission:
    """The rules of one enumeration (one job, cluster and engine) and the verdicts found so far."""

    def __init__(self, rules: Sequence[Rule], workload: Workload, cluster: Cluster,
                 groups: tuple[tuple[str, ...], ...]) -> None:
        self.workload, self.cluster, self.groups = workload, cluster, groups
        self.names = tuple(k for group in groups for k in group)
        """The execution keys in the order a row of values holds them."""
        self._starts = [sum(map(len, groups[:i])) for i in range(len(groups))]
        group_of = {k: i for i, group in enumerate(groups) for k in group}
        self._layout: list[tuple[Rule, tuple[str, ...], dict]] = []
        # `_steps`' findings by what they read: a group's values its own rules pass, and whether
        # its joint rules pass every value whatever the earlier positions hold.
        self._passed: dict[tuple, tuple] = {}
        self._every: dict[tuple, bool] = {}
        # Per group, the rules whose last key read is in it: those reading no earlier group sort
        # the group's values once per layout (`own`), the others each row (`joint`).
        self._own: list[list[_Check]] = [[] for _ in groups]
        self._joint: list[list[_Check]] = [[] for _ in groups]
        for rule in rules:
            fixed = tuple(k for k in rule.reads if k not in group_of)
            read = [k for k in rule.reads if k in group_of]
            if not read:
                self._layout.append((rule, fixed, {}))
                continue
            last = max(group_of[k] for k in read)
            if all(group_of[k] == last for k in read):
                self._own[last].append((rule, fixed, tuple(groups[last].index(k) for k in read), {}))
            else:
                self._joint[last].append((rule, fixed, tuple(self.names.index(k) for k in read), {}))

    def layout_passes(self, layout: Plan) -> bool:
        """Whether the rules that read only the layout's keys (and keys the search never varies) pass it."""
        for rule, fixed, seen in self._layout:
            key = tuple(getattr(layout, k) for k in fixed)
            ok = seen.get(key)
            if ok is None:
                ok = seen[key] = not rule.check(layout, self.workload, self.cluster)
            if not ok:
                return False
        return True

    def rows(self, layout: Plan, options: Sequence[Sequence[tuple]],
             admitted: list[list[tuple]] | None = None) -> list[tuple]:
        """The rows of execution values (one value tuple of each group of `options`, in the order
        of their product) that pass every rule with `layout`'s other keys. `admitted`: filled with
        each group's values its own rules pass (every row's values are among their product)."""
        steps = self._steps(layout, options, admitted)
        if steps is None:
            return []
        rows: list[tuple] = [()]
        tail: tuple = ()  # the values of single-valued groups not yet appended to every row
        for (start, values, tests), joint in zip(steps, self._joint):
            if tests:
                if tail:
                    rows, tail = [row + tail for row in rows], ()
                # Rows that agree on the earlier keys these rules read take the same values.
                earlier = itemgetter(*sorted({i for _, _, positions, _ in joint for i in positions if i < start}))
                agreed = list(map(earlier, rows))
                first = dict(zip(reversed(agreed), reversed(rows)))  # a row of each, to test
                taken = {key: [value for value in values if all(test(row + value) for test in tests)]
                         for key, row in first.items()}
                rows = [row + value for row, key in zip(rows, agreed) for value in taken[key]]
                if not rows:
                    return []
            elif len(values) == 1:
                tail += values[0]
            else:
                extended = [tail + value for value in values]
                rows, tail = [row + value for row in rows for value in extended], ()
        return [row + tail for row in rows] if tail else rows

    def count(self, layout: Plan, options: Sequence[Sequence[tuple]], admitted: list[list[tuple]]) -> int:
        """len(`rows`) without making them: the rows' values at the positions the joint rules
        that do test rows read, each such projection with its rows' number, are all the rules
        read of them. `admitted`: filled as `rows` fills it."""
        steps = self._steps(layout, options, admitted)
        if steps is None:
            return 0
        read = sorted({i for (start, _, tests), checks in zip(steps, self._joint) if tests
                       for _, _, positions, _ in checks for i in positions if i < start})
        states: dict[tuple, int] = {(): 1}  # the rows' values at the positions read so far: rows
        at: list[int] = []  # those positions, in order
        template = [value for _, values, _ in steps for value in values[0]]  # a value each position may hold
        for (start, values, tests), names in zip(steps, self.groups):
            kept = [j for j in range(len(names)) if start + j in read]
            grown: dict[tuple, int] = {}
            for state, n in states.items():
                taken = values
                if tests:
                    for i, value in zip(at, state):
                        template[i] = value
                    row = tuple(template[:start])
                    taken = [value for value in values if all(test(row + value) for test in tests)]
                for value in taken:
                    key = state + tuple(value[j] for j in kept)
                    grown[key] = grown.get(key, 0) + n
            states = grown
            at += [start + j for j in kept]
        return sum(states.values())

    def _steps(self, layout: Plan, options: Sequence[Sequence[tuple]], admitted: list[list[tuple]] | None
               ) -> list[tuple[int, list[tuple], list[Callable[[tuple], bool]]]] | None:
        """Of each group (neither reads the rows): its first position, the values its own rules
        pass, and its joint rules' tests, none where each passes every value whatever the earlier
        positions hold among their admitted values (`_takes_every_value`). None where a group
        admits no value. `admitted`: filled with the values."""
        steps = []
        seen: list[tuple] = []  # the values each position of a row may hold: its group's admitted ones
        for g, (names, start, own, joint, values) in enumerate(zip(self.groups, self._starts, self._own, self._joint,
                                                                   options)):
            # What the group's own rules pass reads of the layout only their fixed keys: layouts
            # alike there (most of a search's) share it.
            key = (g, tuple(getattr(layout, k) for _, fixed, _, _ in own for k in fixed), values)
            passed = self._passed.get(key)
            if passed is None:
                passed = values
                for check in own:
                    test = self._test(layout, names, *check)
                    passed = [value for value in passed if test(value)]
                passed = self._passed[key] = tuple(passed)
            values = list(passed)
            if admitted is not None:
                admitted.append(values)
            if not values:
                return None
            tests = [self._test(layout, self.names, *check) for check in joint]
            if tests:
                key = (g, tuple(getattr(layout, k) for _, fixed, _, _ in joint for k in fixed), passed,
                       tuple(seen[i] for _, _, positions, _ in joint for i in positions if i < start))
                every = self._every.get(key)
                if every is None:
                    every = self._every[key] = all(
                        _takes_every_value(test, [i for i in positions if i < start], seen, values)
                        for test, (_, _, positions, _) in zip(tests, joint))
                if every:
                    tests = []
            steps.append((start, values, tests))
            seen.extend(tuple(dict.fromkeys(column)) for column in zip(*values))
        return steps

    def _test(self, layout: Plan, names: tuple[str, ...], rule: Rule, fixed: tuple[str, ...],
              positions: tuple[int, ...], seen: dict) -> Callable[[tuple], bool]:
        """The rule's verdict on a tuple of values of `names`, looked up by the values it reads
        (the layout's first, then those at `positions`)."""
        verdicts = seen.setdefault(tuple(getattr(layout, k) for k in fixed), {})
        read = itemgetter(*positions)
        workload, cluster = self.workload, self.cluster

        def test(values: tuple) -> bool:
            key = read(values)
            ok = verdicts.get(key)
            if ok is None:
                # The rule reads nothing else, so the layout's values stand in for the keys not yet chosen.
                ok = verdicts[key] = not rule.check(layout.with_(**dict(zip(names, values))), workload, cluster)
            return ok

        return test


_Check = tuple[Rule, tuple[str, ...], tuple[int, ...], dict]
"""A rule, the keys it reads that the search does not vary, the positions of those it does, its verdicts."""


def _takes_every_value(test: Callable[[tuple], bool], reads: list[int], seen: list[tuple],
                       values: list[tuple]) -> bool:
    """Whether every value passes the test whatever the earlier positions it reads (`reads`)
    hold among the values `seen` there: the rows then need no test of it of their own (a row's
    earlier values are among their product; the other positions hold a value they may hold,
    which the test does not read)."""
    template = [column[0] for column in seen]
    for combination in itertools.product(*(seen[i] for i in reads)):
        for i, value in zip(reads, combination):
            template[i] = value
        row = tuple(template)
        if not all(test(row + value) for value in values):
            return False
    return True
