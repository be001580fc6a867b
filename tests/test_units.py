import pytest
from hypothesis import given
from hypothesis import strategies as st

from planner.spec.units import parse_count, parse_rate, parse_size


@pytest.mark.parametrize("text, expected", [
    ("80GiB", 80 * 2**30),
    ("80GB", 80 * 10**9),
    ("2TB", 2 * 10**12),
    ("512MiB", 512 * 2**20),
    ("1.5 GiB", int(1.5 * 2**30)),
    ("1_000", 1000),
    (4096, 4096),
])
def test_sizes_keep_gb_and_gib_apart(text, expected):
    assert parse_size(text) == expected


def test_a_7b_model_in_fp32_is_28_gb_and_26_08_gib():
    # The seed example (docs/examples.md): 7,000,559,616 params x 4 bytes = 28.0 GB = 26.08 GiB.
    n_bytes = 7_000_559_616 * 4
    assert round(n_bytes / parse_size("1GB"), 1) == 28.0
    assert round(n_bytes / parse_size("1GiB"), 2) == 26.08


@pytest.mark.parametrize("text, bytes_per_s", [
    ("400Gbps", 50e9),
    ("200 Gbps", 25e9),
    ("50GB/s", 50e9),
    ("3.35TB/s", 3.35e12),
    (8e9, 1e9),  # plain numbers are bits per second
])
def test_rates_read_bits_and_bytes(text, bytes_per_s):
    assert parse_rate(text) == pytest.approx(bytes_per_s)


@pytest.mark.parametrize("text, count", [("16M", 16e6), ("1.5T", 1.5e12), ("1e12", 1e12), ("2B", 2e9),
                                         ("300B tokens", 3e11), (1000, 1000)])
def test_counts(text, count):
    assert parse_count(text) == pytest.approx(count)


@pytest.mark.parametrize("bad", ["eighty GiB", "80 parsecs", "GiB", "", True])
def test_bad_sizes_say_what_is_valid(bad):
    with pytest.raises(ValueError):
        parse_size(bad)


@given(st.integers(min_value=0, max_value=2**50))
def test_plain_byte_counts_round_trip(n):
    assert parse_size(n) == n
    assert parse_size(f"{n}B") == n
