"""``DriftCallback``: a cheap spectral-drift summary of the weights during training.

At each trainer save (``on_save``), every ``every`` steps and at the last step,
the selected matrices of the model as it is now are factorised and compared
with the base's factorisation, computed once when training begins (from the
model's own weights, or from a ``base`` checkpoint through the factor cache).
Each matrix gets the metrics of ``spindoctor drift``
(:func:`spindoctor.spectral.run.matrix_metrics`, the same numbers as its
``per_matrix.csv``); the per-kind means (:func:`spindoctor.spectral.run.summarize`)
are appended to ``drift.jsonl`` and logged through the trainer
(docs/design.md, "Callbacks" and "Spectral drift").
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spindoctor.callbacks.base import MainProcessCallback, checked_config
from spindoctor.errors import UserError
from spindoctor.io import append_jsonl
from spindoctor.models.checkpoints import DRIFT_FILE
from spindoctor.spectral.run import DriftConfig, k_label, matrix_metrics, summarize
from spindoctor.spectral.svd import FactorCache, Factorization, checkpoint_factorizations, factorize
from spindoctor.spectral.tensors import Checkpoint, MatrixInfo, select_matrices

LOGGED = ("rel_update", "ds_rel_mean_abs")  # with the top-k principal angles (u, v) of each k


class ModelWeights:
    """:func:`~spindoctor.spectral.tensors.select_matrices`'s view of a model: parameter names and shapes."""

    def __init__(self, model: Any) -> None:
        self.params = dict(model.named_parameters())

    def names(self) -> list[str]:
        return list(self.params)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.params[name].shape)

    def matrix(self, info: MatrixInfo):
        """The weight of ``info`` now, as a float32 CPU copy ``(out, in)`` (GPT-2 ``Conv1D`` transposed)."""
        import torch

        W = self.params[info.name].detach().to(device="cpu", dtype=torch.float32, copy=True)
        return W.T.contiguous() if info.conv1d else W


def base_factors(model: Any, base: str | Path | None, infos: list[MatrixInfo], dtype: str,
                 cache_dir: str | Path | None) -> dict[str, tuple[Any, Factorization]]:
    """``{name: (W_base (out, in) float32 CPU, its Factorization)}`` of the selected matrices.

    ``base=None``: the model's weights as they are now. A ``base`` checkpoint folder:
    its tensors, factorised through the factor cache at ``cache_dir`` when given
    (the entries ``spindoctor drift`` uses), so they are computed once across runs.
    """
    if base is None:
        weights = ModelWeights(model)
        out = {}
        for info in infos:
            W = weights.matrix(info)
            out[info.name] = (W, factorize(W, dtype=dtype))
        return out
    cache = FactorCache(cache_dir) if cache_dir is not None else None
    return {info.name: (W, f) for info, W, f in checkpoint_factorizations(Checkpoint(base), infos, cache, dtype)}


def select(model: Any, base: str | Path | None, matrices: str, regex: str | None) -> list[MatrixInfo]:
    """The matrices to follow: selected in ``base`` (or the model), each present in the model with its shape."""
    weights = ModelWeights(model)
    source = Checkpoint(base) if base is not None else weights
    infos = select_matrices(source, matrices, regex)  # type: ignore[arg-type]
    if not infos:
        raise UserError(f"no matrices match preset {matrices!r}" + (f" and regex {regex!r}" if regex else ""))
    for info in infos:
        if info.name not in weights.params:
            raise UserError(f"tensor {info.name!r} of the base is not a parameter of the model")
        if source.shape(info.name) != weights.shape(info.name):
            raise UserError(f"shape of {info.name!r} differs between the base and the model")
    return infos


def drift_rows(model: Any, base: dict[str, tuple[Any, Factorization]], infos: list[MatrixInfo],
               ks: list[float | int], dtype: str) -> list[dict]:
    """``spindoctor drift``'s per-matrix rows of the model now against ``base`` (non-finite matrices left out)."""
    weights = ModelWeights(model)
    rows = []
    for info in infos:
        W = weights.matrix(info)
        if not bool(W.isfinite().all()):
            warnings.warn(f"DriftCallback: {info.name} holds NaN or Inf; left out", stacklevel=2)
            continue
        W_ref, f_ref = base[info.name]
        row, _ = matrix_metrics(info, W_ref, W, f_ref, factorize(W, dtype=dtype), ks, dtype)
        rows.append(row)
    return rows


def kind_rows(rows: list[dict], ks: list[float | int]) -> list[dict]:
    """One row per matrix kind and one for all (``kind="all"``): ``n`` and the means of ``summarize``."""
    summary = summarize(rows, ks)
    out = [{"kind": "all", "n": len(rows), **summary["overall"]}]
    out += [{"kind": kind, **values} for kind, values in summary["by_kind"].items()]
    return out


class DriftCallback(MainProcessCallback):
    """Log how far the weights have turned and stretched from the base while training.

    When: at every trainer save (``on_save``), every ``every`` steps (when given)
    and at the last step (``at_end``); each step once. The base factorisation is
    made once, when training begins (main process; the others wait).

    Each measurement appends to ``out/drift.jsonl`` one row per matrix kind and
    one with ``kind="all"``: ``stage, step, kind, n`` (matrices), the means of
    ``rel_update`` (``||dW||_F / ||W_base||_F``), ``ds_rel_mean_abs`` (mean
    ``|ds / s|``), ``angle_u_mean``, ``angle_v_mean``, ``rot_share`` and the mean
    top-k principal angles ``k<k>_u_mean``, ``k<k>_v_mean`` (radians; definitions in
    docs/design.md, "Spectral drift"), ``seconds``, ``time``. It logs
    ``drift/<kind>/<metric>`` for ``rel_update``, ``ds_rel_mean_abs`` and the top-k
    angles through the trainer.

    Parameters
    ----------
    out : folder of ``drift.jsonl``
    base : checkpoint folder of the reference weights (None: the model's weights
        when training begins; pass the base when resuming a run)
    every : steps between measurements besides the saves (None: saves and the end only)
    on_save : measure at every trainer save
    at_end : measure at the last step
    matrices : preset of :func:`~spindoctor.spectral.tensors.select_matrices` (``paper``:
        q, k, v and down projections, the cheap default)
    regex : keep only matrix names matching it
    k : top-k subspace sizes (fractions of the rank in (0, 1] or counts)
    dtype : ``float32`` or ``float64`` factors
    cache_dir : factor cache folder for a ``base`` checkpoint (None: no cache)
    stage : the ``stage`` field of the rows
    log : log the numbers through the trainer
    say : called with one line per measurement (None: silent)

    Notes
    -----
    Memory: the base matrices and their factors are held on the CPU (about three
    times the selected matrices in float32). Each measurement costs one thin SVD
    per selected matrix.
    """

    def __init__(
        self, out: str | Path, base: str | Path | None = None, *, every: int | None = None, on_save: bool = True,
        at_end: bool = True, matrices: str = "paper", regex: str | None = None,
        k: list[float | int] | tuple[float | int, ...] = (0.25,), dtype: str = "float32",
        cache_dir: str | Path | None = None, stage: str = "sft", log: bool = True,
        say: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(log)
        if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
            raise UserError(f"every must be None or a whole number of steps >= 1, got {every!r}")
        checked = checked_config(DriftConfig, matrices=matrices, regex=regex, k=list(k), dtype=dtype, cache_dir=None)
        self.out, self.base = Path(out), base
        self.every, self.measure_on_save, self.at_end = every, on_save, at_end
        self.matrices, self.regex, self.ks, self.dtype = checked.matrices, checked.regex, checked.k, checked.dtype
        self.cache_dir, self.stage, self.say = cache_dir, stage, say
        self.infos: list[MatrixInfo] = []
        self.reference: dict[str, tuple[Any, Factorization]] | None = None
        self.done: set[int] = set()
        self.rows: list[dict] = []

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.reference is None:
            self.infos = select(model, self.base, self.matrices, self.regex)
            self._on_main(args, state, lambda: self._prepare(model))

    def _prepare(self, model: Any) -> None:
        self.reference = base_factors(model, self.base, self.infos, self.dtype, self.cache_dir)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        step = state.global_step
        if (self.every and step % self.every == 0) or (self.at_end and step == state.max_steps):
            self._measure(args, state, control, model)

    def on_save(self, args, state, control, model=None, **kwargs):
        if self.measure_on_save:
            self._measure(args, state, control, model)

    def _measure(self, args: Any, state: Any, control: Any, model: Any) -> None:
        step = state.global_step
        if step in self.done:
            return
        self.done.add(step)
        self._on_main(args, state, lambda: self._measure_here(args, state, control, model, step))

    def _measure_here(self, args: Any, state: Any, control: Any, model: Any, step: int) -> None:
        """Factorise, compare, append the rows, log (main process)."""
        if self.reference is None:
            self._prepare(model)  # trained without on_train_begin (the callback was added late)
        start = time.perf_counter()
        per_kind = kind_rows(drift_rows(model, self.reference, self.infos, self.ks, self.dtype), self.ks)
        seconds, now = time.perf_counter() - start, time.time()
        rows = [{"stage": self.stage, "step": step, **r, "seconds": seconds, "time": now} for r in per_kind]
        for row in rows:
            append_jsonl(self.out / DRIFT_FILE, row)
        self.rows.extend(rows)
        self._log(self.scalars(rows), args, state, control)
        if self.say is not None:
            head = rows[0]
            lab = k_label(self.ks[0])
            self.say(f"step {step:>4}  drift |ds/s| {_fmt(head['ds_rel_mean_abs'])}  "
                     f"{lab} angle u {_fmt(head[f'{lab}_u_mean'])} v {_fmt(head[f'{lab}_v_mean'])} rad")

    def scalars(self, rows: list[dict]) -> dict[str, float]:
        """``drift/<kind>/<metric>`` for the logged metrics (None and NaN left out)."""
        keys = LOGGED + tuple(f"{k_label(s)}_{side}_mean" for s in self.ks for side in ("u", "v"))
        return {f"drift/{r['kind']}/{key}": float(r[key]) for r in rows for key in keys
                if r.get(key) is not None and not math.isnan(r[key])}


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
