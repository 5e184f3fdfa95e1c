"""Torch thread default on a shared machine (spindoctor.devices): the choice from CPUs and load,
the cgroup quota and /proc/stat parsing, and an explicit --threads winning.
No timings: bench/threads.py measures the effect."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

import spindoctor.devices as devices
from spindoctor.devices import choose_threads, cpu_ticks, quota_cpus
from spindoctor.errors import UserError


@pytest.mark.parametrize(("cpus", "busy", "cap", "expected"), [
    (2, 0.0, 2, 2),  # idle 2-core machine: both cores (the old default)
    (2, 1.0, 2, 1),  # one core taken by another process: one thread
    (2, 0.5, 2, 2),  # a core busy half the time or less counts as free
    (2, 0.6, 2, 1),
    (2, 2.0, 2, 1),  # everything taken: still one thread
    (2, 5.0, 2, 1),  # more load than CPUs
    (16, 0.0, 2, 2),  # the cap holds on a big idle machine
    (16, 14.4, 8, 2),
    (16, 3.0, 64, 13),
    (1, 0.0, 2, 1),
    (0, 0.0, 2, 1),  # degenerate: no CPU reported
    (-3, 0.0, 2, 1),
    (4, -1.0, 4, 4),  # a negative load (clock skew) is no load
    (4, math.nan, 4, 1),  # unknown load: assume the worst
    (4, math.inf, 4, 1),
    (4, 0.0, 0, 1),  # a cap below 1 still runs
])
def test_choose_threads_table(cpus, busy, cap, expected):
    assert choose_threads(cpus, busy, cap) == expected


@given(st.integers(-4, 256), st.floats(allow_nan=True, allow_infinity=True), st.integers(-4, 256))
def test_choose_threads_bounds(cpus, busy, cap):
    n = choose_threads(cpus, busy, cap)
    assert isinstance(n, int)
    assert 1 <= n <= max(1, min(cpus, cap))


@given(st.integers(1, 64), st.floats(0, 64), st.floats(0, 64))
def test_choose_threads_monotone_in_load(cpus, a, b):
    low, high = sorted((a, b))
    assert choose_threads(cpus, high, 64) <= choose_threads(cpus, low, 64)


@pytest.mark.parametrize(("quota", "period", "expected"), [
    ("200000", "100000", 2.0),
    ("150000", "100000", 1.5),
    ("max", "100000", None),  # cgroup v2: no limit
    ("-1", "100000", None),  # cgroup v1: no limit
    ("0", "100000", None),
    ("100000", "0", None),
    ("junk", "100000", None),
])
def test_quota_cpus(quota, period, expected):
    assert quota_cpus(quota, period) == expected


PROC_STAT = """cpu  300 10 100 1000 5 1 2 3 0 0
cpu0 100 10 50 400 5 1 2 3 0 0
cpu1 200 0 50 600 0 0 0 0 0 0
intr 12345 1 2
ctxt 999
cpu7 short line
"""


def test_cpu_ticks_sums_only_the_cpus_asked():
    assert cpu_ticks(PROC_STAT, [0]) == (100 + 10 + 50 + 1 + 2 + 3, 100 + 10 + 50 + 400 + 5 + 1 + 2 + 3)
    assert cpu_ticks(PROC_STAT, [1]) == (250, 850)
    assert cpu_ticks(PROC_STAT, [0, 1]) == (166 + 250, 571 + 850)


@pytest.mark.parametrize("text", ["", "\n\n", "intr 1 2\n", PROC_STAT])
def test_cpu_ticks_unknown_cpus(text):
    assert cpu_ticks(text, [5, 7]) is None


def test_busy_cpus_from_ticks_minus_own_time(monkeypatch):
    """Half of two CPUs' ticks busy over the window, none of it ours: one CPU's worth."""
    samples = iter([(1000, 4000), (1100, 4200)])
    monkeypatch.setattr(devices, "_read_ticks", lambda cpus: next(samples))
    assert devices.busy_cpus([0, 1], seconds=0.01) == pytest.approx(1.0, abs=0.2)


def test_busy_cpus_unknown_without_proc_stat(monkeypatch):
    monkeypatch.setattr(devices, "_read_ticks", lambda cpus: None)
    assert devices.busy_cpus([0, 1], seconds=0.0) is None


@pytest.mark.parametrize(("cpus", "quota", "busy", "expected"), [
    ([0, 1], None, 0.0, 2),
    ([0, 1], None, 1.0, 1),
    ([0, 1], None, None, 2),  # load unknown (not Linux): the CPUs we may use
    ([0, 1, 2, 3], 1.0, 0.0, 1),  # a cgroup quota of one CPU on a 4-CPU machine
    ([0, 1, 2, 3], 1.5, 0.0, 2),  # partial CPUs round up
])
def test_default_threads(monkeypatch, cpus, quota, busy, expected):
    monkeypatch.setattr(devices, "usable_cpus", lambda: cpus)
    monkeypatch.setattr(devices, "cpu_quota", lambda: quota)
    monkeypatch.setattr(devices, "busy_cpus", lambda c, seconds=0.1: busy)
    assert devices.default_threads(cap=8) == expected


def test_usable_cpus_nonempty():
    assert len(devices.usable_cpus()) >= 1


def test_explicit_threads_win(monkeypatch):
    import torch

    before = torch.get_num_threads()
    monkeypatch.setattr(devices, "default_threads", lambda cap=2: pytest.fail("auto choice used"))
    try:
        assert devices.set_torch_threads(1) == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_auto_threads_when_none(monkeypatch):
    import torch

    before = torch.get_num_threads()
    monkeypatch.setattr(devices, "default_threads", lambda cap=2: 1)
    try:
        assert devices.set_torch_threads(None) == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("bad", [0, -2])
def test_threads_below_one_refused(bad):
    with pytest.raises(UserError, match="--threads"):
        devices.set_torch_threads(bad)
