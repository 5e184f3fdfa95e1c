"""Which torch device a command runs on (shared by drift, sweeps and probes)."""

from __future__ import annotations

from spindoctor.errors import UserError


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` when available else ``cpu``; reject unknown names."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda requested but no CUDA device is available")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise UserError(f"--device must be auto, cpu or cuda, got {device!r}")
    return device


def cpu_workers(requested: int | None, device: str, cap: int = 4) -> tuple[int, int]:
    """``(workers, torch threads per worker)`` for per-matrix work under this process's thread budget.

    The budget is ``torch.get_num_threads()``. Symmetric eigensolvers, the bulk of
    drift's work once factorisations are cached, scale poorly with threads (an
    fp32 576x576 ``eigvalsh``: 24 ms on one MKL thread, 17 ms on two), so on CPU
    the matrices are split over ``min(budget, cap)`` single-purpose workers
    instead. CUDA work stays in one worker.
    """
    import torch

    budget = max(1, torch.get_num_threads())
    if requested is not None:
        if requested < 1:
            raise UserError(f"--workers must be >= 1, got {requested}")
        workers = requested
    else:
        workers = 1 if device != "cpu" else min(budget, cap)
    return workers, max(1, budget // workers)


def memory_bytes() -> int | None:
    """Memory this process may use: physical memory, or the cgroup v2 limit when lower (None: unknown)."""
    import os
    from pathlib import Path

    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows)
        return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            total = min(total, int(limit))
    except OSError:
        pass
    return total


def map_in_workers(fn, items, workers: int, threads: int):
    """Yield ``fn(item)`` for each item, in order, computed by ``workers`` threads.

    Each worker thread runs torch with ``threads`` intra-op threads and autograd
    off (both are per-thread settings). One worker is a plain loop in the calling
    thread. On an error (or Ctrl-C) the items not started are cancelled and the
    error is raised once the running ones end.
    """
    import torch

    if workers <= 1:
        for item in items:
            yield fn(item)
        return
    from concurrent.futures import ThreadPoolExecutor

    def call(item):
        with torch.no_grad():
            return fn(item)

    budget = torch.get_num_threads()
    pool = ThreadPoolExecutor(workers, thread_name_prefix="spindoctor", initializer=torch.set_num_threads,
                              initargs=(threads,))
    try:
        futures = [pool.submit(call, item) for item in items]
        for fut in futures:
            yield fut.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        # OpenMP builds keep the thread count per thread; builds with one shared pool do not
        torch.set_num_threads(budget)
