"""Per-matrix workers (spindoctor.devices): order, per-thread torch settings, errors, and
drift giving the same metrics with one worker or several."""

import threading
import time

import pytest
import torch

from spindoctor.devices import cpu_workers, map_in_workers
from spindoctor.errors import UserError
from spindoctor.spectral import drift

from .test_checkpoints import assert_rows_close, save_pair, tiny_model


@pytest.mark.parametrize("workers", [1, 3], ids=["inline", "three-threads"])
def test_results_come_back_in_input_order(workers):
    def slow_first(i):
        time.sleep(0.05 if i == 0 else 0.0)  # the first item finishes last
        return i * i

    assert list(map_in_workers(slow_first, range(8), workers, 1)) == [i * i for i in range(8)]


def test_worker_threads_get_their_torch_settings():
    before = torch.get_num_threads()
    seen = list(map_in_workers(lambda _: (threading.current_thread().name, torch.get_num_threads(),
                                          torch.is_grad_enabled()), range(4), 2, 1))
    assert all(name.startswith("spindoctor") and n == 1 and not grad for name, n, grad in seen)
    assert torch.is_grad_enabled() and torch.get_num_threads() == before  # the caller's settings are untouched


def test_an_error_cancels_the_items_not_started():
    started = []

    def fail_on_two(i):
        started.append(i)
        if i == 2:
            raise UserError("bad tensor 2")
        time.sleep(0.02)
        return i

    with pytest.raises(UserError, match="bad tensor 2"):
        list(map_in_workers(fail_on_two, range(200), 2, 1))
    assert len(started) < 200


@pytest.mark.parametrize(
    "requested, device, budget, expected",
    [(None, "cpu", 2, (2, 1)), (None, "cpu", 16, (4, 4)), (None, "cuda", 16, (1, 16)), (3, "cpu", 2, (3, 1)),
     (1, "cpu", 8, (1, 8))],
    ids=["auto-2-cores", "auto-capped", "cuda-one-worker", "more-than-budget", "one-worker-all-threads"],
)
def test_worker_split(requested, device, budget, expected):
    before = torch.get_num_threads()
    torch.set_num_threads(budget)
    try:
        assert cpu_workers(requested, device) == expected
    finally:
        torch.set_num_threads(before)


def test_zero_workers_is_a_user_error():
    with pytest.raises(UserError, match="--workers"):
        cpu_workers(0, "cpu")


def test_drift_same_metrics_with_one_worker_or_three(tmp_path):
    a, b = save_pair(tiny_model("llama"), tmp_path)
    one = drift(a, b, matrices="all", cache_dir=None, workers=1)
    three = drift(a, b, matrices="all", cache_dir=None, workers=3)
    assert one.meta["workers"]["count"] == 1 and three.meta["workers"]["count"] == 3
    assert [r["name"] for r in one.rows] == [r["name"] for r in three.rows]
    assert_rows_close(one.rows, three.rows)  # float32 BLAS rounding may differ with the thread count


def test_big_matrices_run_one_at_a_time_and_rows_keep_their_order(tmp_path, monkeypatch):
    import spindoctor.devices as devices

    a, b = save_pair(tiny_model("llama"), tmp_path)
    alone_ref = drift(a, b, matrices="all", cache_dir=None, workers=1)
    # memory for 2 workers x 11 copies of a 16x16 float32 matrix in a quarter: bigger ones go alone
    monkeypatch.setattr(devices, "memory_bytes", lambda: 4 * 2 * 11 * 4 * 16 * 16)
    mixed = drift(a, b, matrices="all", cache_dir=None, workers=2)
    n_big = sum(r["rows"] * r["cols"] > 16 * 16 for r in mixed.rows)
    assert 0 < n_big < len(mixed.rows) and mixed.meta["workers"]["one_at_a_time"] == n_big
    assert [r["name"] for r in mixed.rows] == [r["name"] for r in alone_ref.rows]
    assert_rows_close(alone_ref.rows, mixed.rows)


@pytest.mark.parametrize(
    "memory, workers, expected_alone",
    [(None, 4, 0), (10**12, 4, 0), (1, 4, 3), (1, 1, 0)],
    ids=["unknown-memory", "plenty", "too-little", "one-worker-never-splits"],
)
def test_split_by_memory(memory, workers, expected_alone, tmp_path):
    from spindoctor.spectral.run import split_by_memory
    from spindoctor.spectral.tensors import Checkpoint, select_matrices

    a, _ = save_pair(tiny_model("llama"), tmp_path)
    ck = Checkpoint(a)
    infos = select_matrices(ck, "paper")[:3]
    together, alone = split_by_memory(infos, ck, workers, memory)
    assert len(alone) == expected_alone and len(together) + len(alone) == 3
