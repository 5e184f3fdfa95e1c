"""`spindoctor cache info|clear`: labelled entries, per-checkpoint removal, age, and bad input."""

import json
import os
import time

import pytest

from spindoctor.spectral import drift
from spindoctor.spectral.svd import FactorCache

from .test_checkpoints import run, save_pair, tiny_model


@pytest.fixture
def filled(tmp_path):
    a, b = save_pair(tiny_model("llama"), tmp_path)
    cache = tmp_path / "cache"
    res = drift(a, b, cache_dir=cache)
    return a, b, cache, len(res.rows)


def test_entries_carry_checkpoint_and_tensor(filled):
    a, b, cache, n = filled
    entries = FactorCache(cache).entries()
    assert len(entries) == 2 * n
    assert {e.checkpoint for e in entries} == {str(a.resolve()), str(b.resolve())}
    assert all(e.tensor and e.tensor.endswith(".weight") and len(e.fingerprint) == 64 for e in entries)


def test_info_json_adds_up(filled, capsys):
    _, _, cache, n = filled
    code, out, err = run(capsys, "cache", "info", "--cache", cache, "--json")
    assert code == 0, err
    doc = json.loads(out)
    on_disk = sum(p.stat().st_size for p in cache.glob("??/*.safetensors"))
    assert doc["bytes"] == on_disk and doc["entries"] == 2 * n and len(doc["checkpoints"]) == 2


def test_clear_one_checkpoint_keeps_the_other(filled, capsys):
    a, b, cache, n = filled
    code, out, _ = run(capsys, "cache", "clear", "--cache", cache, "--checkpoint", b, "--dry-run", "--json")
    assert code == 0 and json.loads(out)["entries"] == n and len(FactorCache(cache).entries()) == 2 * n
    code, out, _ = run(capsys, "cache", "clear", "--cache", cache, "--checkpoint", b, "--json")
    assert code == 0 and json.loads(out)["freed"] > 0
    assert {e.checkpoint for e in FactorCache(cache).entries()} == {str(a.resolve())}
    assert drift(a, b, cache_dir=cache).meta["cache"]["hits"] == n  # the reference still comes from the cache


def test_older_than_uses_last_use(filled, capsys):
    a, b, cache, n = filled
    old = time.time() - 10 * 86400
    for e in FactorCache(cache).entries():
        os.utime(e.path, (old, old))
    drift(a, a, cache_dir=cache)  # hits refresh the reference's entries
    code, out, _ = run(capsys, "cache", "clear", "--cache", cache, "--older-than", 5, "--json")
    assert code == 0 and json.loads(out)["entries"] == n
    assert {e.checkpoint for e in FactorCache(cache).entries()} == {str(a.resolve())}
    code, out, _ = run(capsys, "cache", "clear", "--cache", cache, "--all", "--json")
    assert json.loads(out)["entries"] == n and FactorCache(cache).entries() == []


@pytest.mark.parametrize(
    "args, needle",
    [([], "exactly one"), (["--all", "--older-than", "3"], "exactly one"), (["--older-than", "-1"], ">= 0"),
     (["--all", "--cache", "/nonexistent/cache"], "not found")],
    ids=["no-selector", "two-selectors", "negative-days", "missing-folder"],
)
def test_clear_bad_input_exits_2(args, needle, filled, capsys):
    _, _, cache, _ = filled
    extra = [] if "--cache" in args else ["--cache", cache]
    code, _, err = run(capsys, "cache", "clear", *extra, *args)
    assert code == 2 and len(err.strip().splitlines()) == 1 and needle in err


@pytest.mark.parametrize("command", [["info"], ["clear", "--all"]], ids=["info", "clear"])
def test_cache_that_is_a_file_exits_2(command, tmp_path, capsys):
    f = tmp_path / "cache"
    f.write_text("not a folder")
    code, _, err = run(capsys, "cache", *command, "--cache", f)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "not a folder" in err
    assert f.read_text() == "not a folder"
