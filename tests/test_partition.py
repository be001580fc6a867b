"""The pipeline partitions the search probes, against their definitions enumerated in full."""
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.cost.shard import stage_layer_counts
from planner.search.layouts import _probe_partitions
from planner.search.partition import nearest_partition, partitions, runnable


def _lows_and_layers():
    return st.tuples(st.integers(2, 40), st.integers(1, 6), st.integers(1, 6), st.integers(1, 6),
                     st.integers(1, 200)).filter(lambda c: runnable(c[4], c[0], c[1:4]))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(_lows_and_layers())
def test_nearest_partition_is_the_split_nearest_the_default(case):
    pp, first, mid, last, layers = case
    lows = (first, mid, last)
    even = stage_layer_counts(layers, pp)
    target = (even[0], even[1] if pp > 2 else 0, even[-1])
    expected = min(partitions(layers, pp, *lows),
                   key=lambda t: (sum(abs(a - b) for a, b in zip(t, target)), max(t), t))
    assert nearest_partition(layers, pp, lows) == expected


@settings(max_examples=300, deadline=None, derandomize=True)
@given(_lows_and_layers())
def test_second_probe_is_the_nearest_split_moving_every_class(case):
    """The slopes' second split: the nearest to the first (ties: the smaller tuple) where the
    first and last counts differ, and the middle one too unless it cannot."""
    pp, first, mid, last, layers = case
    lows = (first, mid, last)
    options = partitions(layers, pp, *lows)
    p1 = nearest_partition(layers, pp, lows)
    single_mid = len({t[1] for t in options}) == 1
    expected = next((t for t in sorted(options, key=lambda t: (sum(abs(a - b) for a, b in zip(t, p1)), t))
                     if t[0] != p1[0] and t[2] != p1[2] and (single_mid or t[1] != p1[1])), None)
    assert _probe_partitions(layers, pp, lows) == (p1, expected)
