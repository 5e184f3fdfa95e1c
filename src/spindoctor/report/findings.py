"""The findings table: each finding of the paper, this run's number with a 95% interval, a verdict.

Every row is judged by one rule (docs/design.md, "Evidence"), applied by
:func:`spindoctor.stats.verdict`: *reproduced* when the interval excludes 0 on
the side the paper predicts, *contradicted* when it excludes 0 on the other
side, *inconclusive* otherwise; an inconclusive row with a paired estimate says
how many probe hands a normal-approximation interval would need
(:func:`spindoctor.stats.hands_to_resolve`). The numbers come from files the
stages wrote (``selection.json``'s ``paired``, each RL run's ``done.json``, the
sweeps' paired evidence, ``drift/null.json``, ``toy/toy.json``); nothing is
recomputed here. Findings are numbered as in the paper's summary
(Jin et al., arXiv:2508.16546).
"""

from __future__ import annotations

from spindoctor.stats import hands_to_resolve, verdict

CLAIMS = {
    1: "During SFT on the ID rule, OOD accuracy peaks early and then falls while ID keeps rising.",
    2: "RL started from an SFT checkpoint restores OOD ability (when the checkpoint is not too far gone).",
    3: "Singular values barely move during fine-tuning; singular vectors rotate.",
    4: "Restoring singular directions (top ranks, shallow layers) recovers much of the lost OOD accuracy.",
    5: "Imposing the SFT directions on the RL model drops OOD again.",
    6: "A rotation between two factors keeps their product and singular values while the vectors turn.",
}
PAPER = {
    1: "OOD peak -> SFT end: Llama 17.5% -> 9.0% (-8.6 pp), Qwen 19.7% -> 17.1% (-2.6 pp)",
    2: "SFT end -> RL: Llama OOD 9.0% -> 16.2% (+7.3 pp), Qwen 17.1% -> 19.7% (+2.6 pp)",
    3: "|ds| about 0.005 around 0; leading principal angles 25-30 deg, rising to 90 deg in the tail",
    4: "top 20% of directions or first 25% of layers recover 70-80% of the lost OOD accuracy",
    5: "Llama OOD 16.2% -> 10.6%, Qwen 19.8% -> 19.0%",
    6: "appendix argument (exact algebra)",
}


def _row(finding: int, measure: str, stat: dict | None, direction: int, unit: str, note: str = "",
         resolve: str | None = None) -> dict:
    """One table row from a stats dict with estimate/lo/hi (a PairedDiff or Share dict), or None."""
    est = None if stat is None else stat.get("estimate")
    lo = None if stat is None else stat.get("lo")
    hi = None if stat is None else stat.get("hi")
    v = verdict(lo, hi, direction) if stat is not None else "inconclusive"
    if v == "inconclusive" and resolve is None and stat is not None and "se" in stat and est:
        need = hands_to_resolve(est, stat["se"], stat["n"])
        resolve = f"about {need} paired hands would resolve it" if need else None
    if stat is None and resolve is None:
        resolve = "not measured in this run"
    return {"finding": finding, "claim": CLAIMS[finding], "paper": PAPER[finding], "measure": measure,
            "estimate": est, "lo": lo, "hi": hi, "se": None if stat is None else stat.get("se"), "unit": unit,
            "predicted": "> 0" if direction > 0 else "< 0",
            "verdict": v, "resolve": resolve, "note": note}


def _sft_rows(selection: dict | None) -> list[dict]:
    pairs = (selection or {}).get("paired", {})
    drop = pairs.get("end_vs_peak", {}).get("ood", {})
    rise = pairs.get("peak_vs_base", {}).get("ood", {})
    gain_id = pairs.get("end_vs_peak", {}).get("id", {})
    signal = "the OOD loss proxy (accuracy flat)" if (selection or {}).get("signal") == "loss" else "OOD accuracy"
    note = ("the peak is chosen on these same hands, so the drop is somewhat optimistic; "
            f"select's shape: {(selection or {}).get('shape', 'n/a')}, peak placed on {signal}")
    return [
        _row(1, "OOD accuracy, SFT end - OOD peak (paired)", drop.get("acc"), -1, "fraction", note),
        _row(1, "OOD loss proxy, SFT end - OOD peak (paired)", drop.get("loss"), +1, "nats/token"),
        _row(1, "OOD accuracy, OOD peak - base (paired)", rise.get("acc"), +1, "fraction"),
        _row(1, "ID accuracy, SFT end - OOD peak (paired)", gain_id.get("acc"), +1, "fraction"),
    ]


def _rl_rows(rl_done: dict[str, dict]) -> list[dict]:
    rows = []
    for start, done in rl_done.items():
        paired = (done or {}).get("paired", {})
        ood, id_ = paired.get("ood", {}), paired.get("id", {})
        rows.append(_row(2, f"RL from SFT {start}: ID reward, last - start (paired; the stage must learn)",
                         id_.get("reward"), +1, "points"))
        rows.append(_row(2, f"RL from SFT {start}: ID accuracy, last - start (paired; the stage must learn)",
                         id_.get("acc"), +1, "fraction"))
        rows.append(_row(2, f"RL from SFT {start}: OOD accuracy, last - start (paired)", ood.get("acc"), +1, "fraction"))
        rows.append(_row(2, f"RL from SFT {start}: OOD loss proxy, last - start (paired)", ood.get("loss"), -1,
                         "nats/token"))
    return rows or [_row(2, "RL OOD change", None, +1, "fraction")]


def _null_rows(null: dict | None) -> list[dict]:
    overall = (null or {}).get("summary", {}).get("overall", {})
    pair = (null or {}).get("pair", "base -> SFT end")
    out = []
    for key, measure, direction in (
        ("gaussian_ds_rel_mean_abs", "mean log(|ds/s| observed / Gaussian null of the same norm)", -1),
        ("spectrum_ds_rel_mean_abs", "mean log(|ds/s| observed / null with dW's singular values)", -1),
        ("gaussian_angle_topk_deg", "mean log(top-25% principal angle observed / Gaussian null)", +1),
        ("gaussian_rot_share", "mean log(rotational share observed / Gaussian null)", +1),
    ):
        stat = overall.get(key)
        stat = None if stat is None else {"estimate": stat["mean"], "lo": stat["lo"], "hi": stat["hi"]}
        note = "" if stat is None else f"{pair}; observed = {overall[key]['ratio']:.2f}x the null, {overall[key]['n']} matrices"
        out.append(_row(3, measure, stat, direction, "log ratio", note,
                        resolve=None if null else "no spectral null in this run"))
    return out


def _sweep_point(sweeps: dict, kind: str, pick) -> tuple[dict | None, str]:
    rows = [r for r in (sweeps.get(kind) or {}).get("rows", []) if r.get("kind") not in (None, "baseline")]
    chosen = pick(rows) if rows else None
    return chosen, (chosen or {}).get("point", "")


def _restore_rows(sweeps: dict) -> list[dict]:
    def nearest_02(rows):
        fractional = [r for r in rows if isinstance(r.get("k_top"), float)]
        return min(fractional or rows, key=lambda r: abs(float(r.get("k_top") or 0) - 0.2))

    out = []
    for kind, pick, label in (("ranks", nearest_02, "top-k directions"), ("layers", lambda rows: rows[0], "first block")):
        point, name = _sweep_point(sweeps, kind, pick)
        ev = ((point or {}).get("paired") or {}).get("ood", {}).get("recovered", {})
        out.append(_row(4, f"share of lost OOD accuracy recovered, {label} ({name})", ev.get("acc"), +1, "share"))
        out.append(_row(4, f"share of lost OOD loss recovered, {label} ({name})", ev.get("loss"), +1, "share"))
    return out


def _impose_rows(sweeps: dict) -> list[dict]:
    point, name = _sweep_point(sweeps, "impose", lambda rows: rows[0])
    ev = ((point or {}).get("paired") or {}).get("ood", {}).get("vs_tuned", {})
    return [_row(5, f"OOD accuracy, SFT directions on RL ({name}) - RL (paired)", ev.get("acc"), -1, "fraction"),
            _row(5, f"OOD loss proxy, SFT directions on RL ({name}) - RL (paired)", ev.get("loss"), +1, "nats/token")]


def _toy_rows(toy: dict | None) -> list[dict]:
    gauge = (toy or {}).get("gauge_identity")
    if not gauge:
        return [_row(6, "rotation toy", None, +1, "")]
    exact = gauge["product_rel_error"] < 1e-10 and gauge["sv_max_rel_change_A"] < 1e-10
    turned = gauge["mean_angle_right_vectors_A_deg"]
    row = _row(6, "product and singular values kept (relative error) while vectors turn (deg)", None, +1, "deg",
               f"product error {gauge['product_rel_error']:.1e}, singular values {gauge['sv_max_rel_change_A']:.1e}",
               resolve="")
    row.update(estimate=turned, lo=turned, hi=turned,
               verdict="reproduced" if exact and turned > 0 else "contradicted", resolve=None)
    return [row]


def findings_table(data: dict) -> list[dict]:
    """Every finding's rows from a run's data (:func:`spindoctor.report.data.load_run`)."""
    return (_sft_rows(data.get("selection")) + _rl_rows(data.get("rl_done", {})) + _null_rows(data.get("null"))
            + _restore_rows(data.get("sweeps", {})) + _impose_rows(data.get("sweeps", {})) + _toy_rows(data.get("toy")))


HEADLINE = {1: "OOD accuracy, SFT end", 2: "RL from SFT end: OOD accuracy", 3: "mean log(|ds/s| observed / Gaussian",
            4: "share of lost OOD accuracy recovered, top-k", 5: "OOD accuracy", 6: "product"}


def finding_verdicts(rows: list[dict]) -> dict[int, dict]:
    """One headline row per finding (:data:`HEADLINE` names its measure; else the finding's first row)."""
    out: dict[int, dict] = {}
    for row in rows:
        if row["measure"].startswith(HEADLINE[row["finding"]]):
            out[row["finding"]] = row
    for row in rows:
        out.setdefault(row["finding"], row)
    return dict(sorted(out.items()))
