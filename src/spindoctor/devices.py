"""Which torch device a command runs on (shared by drift, sweeps and probes)."""

from __future__ import annotations

from spindoctor.errors import UserError


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` when available else ``cpu``; reject unknown names and absent devices."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda requested but no CUDA device is available")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise UserError(f"--device must be auto, cpu or cuda, got {device!r}")
    if device.startswith("cuda:"):
        index = device.removeprefix("cuda:")
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not index.isdigit() or int(index) >= count:
            raise UserError(f"--device {device}: no such CUDA device ({count} available)")
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


# --- torch CPU threads on a shared machine -------------------------------------------------

AUTO_THREADS_CAP = 2  # the old fixed default; more threads are unmeasured for the organism's small matrices


def choose_threads(cpus: int, busy: float, cap: int = AUTO_THREADS_CAP) -> int:
    """Threads for ``cpus`` usable CPUs of which ``busy`` CPUs' worth is taken by other processes.

    The free CPUs rounded to the nearest whole one (a core busy half the time or
    less counts as free), between 1 and ``min(cpus, cap)``. Pure: every input is
    clamped: 0 CPUs, a NaN or infinite load or a load above ``cpus`` give 1.
    """
    import math

    top = max(1, min(int(cpus), int(cap)))
    if not math.isfinite(busy):  # NaN or infinite load: assume the worst
        return 1
    free = cpus - max(0.0, busy)
    return max(1, min(top, int(free + 0.5)))


def usable_cpus() -> list[int]:
    """The CPU ids this process may run on (its affinity; every CPU where that is unknown)."""
    import os

    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no sched_getaffinity (macOS, Windows)
        return list(range(os.cpu_count() or 1))


def quota_cpus(quota: str, period: str) -> float | None:
    """CPUs' worth of a cgroup CPU quota (``max``/``-1``, unparsable or non-positive: None, no limit)."""
    try:
        q, p = float(quota), float(period)
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None


def cpu_quota() -> float | None:
    """CPUs' worth of time the cgroup allows (cgroup v2 ``cpu.max`` or v1 CFS quota); None: no limit."""
    from pathlib import Path

    try:
        return quota_cpus(*Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2])
    except (OSError, TypeError):  # no cgroup v2 file, or one field only
        pass
    try:
        v1 = Path("/sys/fs/cgroup/cpu")
        return quota_cpus((v1 / "cpu.cfs_quota_us").read_text().strip(), (v1 / "cpu.cfs_period_us").read_text().strip())
    except OSError:
        return None


def cpu_ticks(proc_stat: str, cpus: list[int]) -> tuple[int, int] | None:
    """``(busy, total)`` clock ticks summed over ``cpus`` in /proc/stat text (None: none of them listed).

    Busy is user + nice + system + irq + softirq + steal (nice'd and stolen time
    are time we cannot have); idle and iowait are free.
    """
    wanted = {f"cpu{i}" for i in cpus}
    busy = total = 0
    for line in proc_stat.splitlines():
        name, *values = line.split() or [""]
        if name in wanted and len(values) >= 8:
            user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in values[:8])
            busy += user + nice + system + irq + softirq + steal
            total += user + nice + system + idle + iowait + irq + softirq + steal
    return (busy, total) if total else None


def _read_ticks(cpus: list[int]) -> tuple[int, int] | None:
    from pathlib import Path

    try:
        return cpu_ticks(Path("/proc/stat").read_text(), cpus)
    except OSError:  # not Linux
        return None


def busy_cpus(cpus: list[int], seconds: float = 0.1) -> float | None:
    """CPUs' worth of work other processes did on ``cpus`` over the next ``seconds`` (None: unknown).

    Sampled from /proc/stat (nice'd and stolen time count as busy), minus this
    process's own CPU time over the same window.
    """
    import time

    before, own0, t0 = _read_ticks(cpus), time.process_time(), time.perf_counter()
    if before is None:
        return None
    time.sleep(seconds)
    after, own1, t1 = _read_ticks(cpus), time.process_time(), time.perf_counter()
    if after is None or after[1] <= before[1]:
        return None
    share = (after[0] - before[0]) / (after[1] - before[1])  # busy share of all ticks on those CPUs
    return max(0.0, share * len(cpus) - (own1 - own0) / max(t1 - t0, 1e-9))


def default_threads(cap: int = AUTO_THREADS_CAP) -> int:
    """Torch threads for a run that starts now: the usable CPUs not busy with other work, at most ``cap``."""
    import math

    cpus = usable_cpus()
    quota = cpu_quota()
    n = len(cpus) if quota is None else max(1, min(len(cpus), math.ceil(quota)))
    busy = busy_cpus(cpus)
    return choose_threads(n, 0.0 if busy is None else busy, cap)


def set_torch_threads(threads: int | None) -> int:
    """``torch.set_num_threads``: ``threads`` when given (``--threads`` wins), else :func:`default_threads`."""
    import logging

    import torch

    if threads is not None and threads < 1:
        raise UserError(f"--threads must be >= 1, got {threads}")
    chosen = threads if threads is not None else default_threads()
    torch.set_num_threads(chosen)
    logging.getLogger(__name__).info("torch threads: %d (%s)", chosen, "set" if threads is not None else "auto")
    return chosen
