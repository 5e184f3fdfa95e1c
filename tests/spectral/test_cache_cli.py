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


KEY = "ab" + "0" * 62


def _foreign(cache, kind):
    """A file in the cache's layout that the cache did not write; returns its path."""
    import torch
    from safetensors.torch import save_file

    factors = {"U": torch.ones(2, 2), "S": torch.ones(2), "Vh": torch.ones(2, 2)}
    path = {"user-safetensors": cache / "ab" / "model.safetensors",
            "entry-name-no-metadata": cache / "ab" / f"{KEY}.safetensors",
            "entry-name-other-tensors": cache / "ab" / f"{KEY}.safetensors",
            "entry-name-not-safetensors": cache / "ab" / f"{KEY}.safetensors",
            "entry-in-the-wrong-folder": cache / "zz" / f"{KEY}.safetensors"}[kind]
    path.parent.mkdir(exist_ok=True)
    if kind == "entry-name-not-safetensors":
        path.write_bytes(b"my notes, not a tensor file")
    elif kind == "entry-name-other-tensors":
        save_file({"weight": torch.ones(2)}, str(path), metadata={"version": "2", "method": "svd"})
    else:
        save_file(factors, str(path), metadata=None if kind == "entry-name-no-metadata" else
                  {"version": "2", "method": "svd"})
    return path


@pytest.mark.parametrize("kind", ["user-safetensors", "entry-name-no-metadata", "entry-name-other-tensors",
                                  "entry-name-not-safetensors", "entry-in-the-wrong-folder"])
def test_files_the_cache_did_not_write_are_skipped_not_counted_or_removed(kind, filled, capsys):
    _, _, cache, n = filled
    foreign = _foreign(cache, kind)
    before = foreign.read_bytes()
    code, out, _ = run(capsys, "cache", "info", "--cache", cache, "--json")
    doc = json.loads(out)
    assert code == 0 and doc["entries"] == 2 * n and doc["skipped"] == [str(foreign)]
    assert doc["bytes"] == sum(e.size for e in FactorCache(cache).entries())
    code, out, _ = run(capsys, "cache", "clear", "--cache", cache, "--all", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["entries"] == 2 * n and doc["skipped"] == [str(foreign)]
    assert foreign.read_bytes() == before and FactorCache(cache).entries() == []
    code, out, _ = run(capsys, "cache", "clear", "--cache", cache, "--all")
    assert code == 0 and "skipped 1 file(s) that are not factor-cache entries" in out and foreign.exists()


def test_entries_of_the_first_format_are_still_recognised(tmp_path, capsys):
    import torch
    from safetensors.torch import save_file

    path = tmp_path / "cache" / "ab" / f"{KEY}.safetensors"
    path.parent.mkdir(parents=True)
    save_file({"U": torch.ones(2, 2), "S": torch.ones(2), "Vh": torch.ones(2, 2)}, str(path),
              metadata={"method": "gram", "version": "1"})
    code, out, _ = run(capsys, "cache", "clear", "--cache", tmp_path / "cache", "--all", "--json")
    assert code == 0 and json.loads(out)["entries"] == 1 and json.loads(out)["skipped"] == [] and not path.exists()


def test_a_wrong_cache_folder_loses_nothing(tiny_model_dir_with_shards, capsys):
    model_dir = tiny_model_dir_with_shards
    before = {p: p.read_bytes() for p in model_dir.rglob("*") if p.is_file()}
    code, out, _ = run(capsys, "cache", "clear", "--cache", model_dir.parent, "--all", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["entries"] == 0 and len(doc["skipped"]) == len(before)
    assert {p: p.read_bytes() for p in model_dir.rglob("*") if p.is_file()} == before


@pytest.fixture
def tiny_model_dir_with_shards(tmp_path):
    """A user's folder in the cache's layout: two-letter folder of *.safetensors weights."""
    import torch
    from safetensors.torch import save_file

    folder = tmp_path / "models" / "v2"
    folder.mkdir(parents=True)
    for i in (1, 2):
        save_file({"w": torch.ones(3)}, str(folder / f"model-0000{i}-of-00002.safetensors"))
    return folder
