"""The factor cache verifies what it reads: a damaged or misplaced entry is recomputed, with one warning.

Each case damages one entry of a warm cache the way a disk, a copy or a hand
edit would, then checks the next run gives the cold run's metrics, warns once
naming the entry, counts it as rejected and rewrites it (the run after is
clean).
"""

import json
import shutil
import warnings

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from spindoctor.spectral import Checkpoint, drift, load_factorization
from spindoctor.spectral.files import MEMO_FILE
from spindoctor.spectral.svd import CacheEntryWarning, FactorCache

from .test_checkpoints import assert_rows_close, save_pair, tiny_model

Q0, Q1 = "model.layers.0.self_attn.q_proj.weight", "model.layers.1.self_attn.q_proj.weight"


def entry_path(cache, ckpt_dir, name=Q0):
    fp = Checkpoint(ckpt_dir).fingerprint(cache)
    return FactorCache(cache).path(FactorCache.key(fp, name, "float32", "gram", None))


def read_entry(path):
    with safe_open(str(path), framework="pt") as fh:
        return fh.metadata(), {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118


def flip_bit_in_s(path):
    data = bytearray(path.read_bytes())
    _, tensors = read_entry(path)
    s0 = tensors["S"][0].numpy().tobytes()
    at = bytes(data).index(s0)  # the first singular value, as stored
    data[at] ^= 0x01  # lowest mantissa bit: a tiny, plausible-looking change
    path.write_bytes(bytes(data))


def nan_in_s(path):
    meta, tensors = read_entry(path)
    tensors["S"][1] = float("nan")
    save_file(tensors, str(path), metadata=meta)


def nan_with_fresh_checksum(path):
    from spindoctor.spectral.cache_entry import checksum

    meta, tensors = read_entry(path)
    tensors["S"][1] = float("nan")
    save_file(tensors, str(path), metadata={**meta, "checksum": checksum(meta, tensors)})


def other_tensors_entry(path, cache, ckpt_dir):
    shutil.copyfile(entry_path(cache, ckpt_dir, Q1), path)  # same shape, another matrix


def wrong_shape(path):
    from spindoctor.spectral.cache_entry import checksum

    meta, tensors = read_entry(path)
    tensors = {k: v[:4].contiguous() if k != "U" else v[:, :4].contiguous() for k, v in tensors.items()}
    save_file(tensors, str(path), metadata={**meta, "checksum": checksum(meta, tensors)})


def truncated(path):
    path.write_bytes(path.read_bytes()[:-40])


def garbage(path):
    path.write_bytes(b"\x00" * 64)


def old_format(path):
    meta, tensors = read_entry(path)
    save_file(tensors, str(path), metadata={"method": meta["method"], "version": "1"})


def unknown_algorithm(path):
    meta, tensors = read_entry(path)
    save_file(tensors, str(path), metadata={**meta, "checksum": "md4:0123"})


def metadata_edit(path):
    meta, tensors = read_entry(path)
    save_file(tensors, str(path), metadata={**meta, "method": "svd" if meta["method"] == "gram" else "gram"})


DAMAGE = {  # case: (damage, what the warning says)
    "flipped-bit-in-S": (flip_bit_in_s, "checksum"), "nan-in-S": (nan_in_s, "checksum"),
    "nan-with-matching-checksum": (nan_with_fresh_checksum, "NaN"),
    "another-tensors-entry": (other_tensors_entry, "another request"), "wrong-shape": (wrong_shape, "expected"),
    "truncated": (truncated, "unreadable"), "garbage": (garbage, "unreadable"),
    "old-format": (old_format, "format version"), "metadata-edited": (metadata_edit, "checksum"),
    "unknown-checksum-algorithm": (unknown_algorithm, "cannot check"),
}


@pytest.fixture(scope="module")
def llama_pair(tmp_path_factory):
    return save_pair(tiny_model("llama"), tmp_path_factory.mktemp("llama"))


@pytest.fixture(scope="module")
def cold(llama_pair):
    a, b = llama_pair
    return drift(a, b, cache_dir=None)


@pytest.mark.parametrize("case", list(DAMAGE), ids=list(DAMAGE))
def test_damaged_entry_is_recomputed_with_one_warning(case, llama_pair, cold, tmp_path):
    a, b = llama_pair
    cache = tmp_path / "cache"
    n = len(drift(a, b, cache_dir=cache).rows)
    path = entry_path(cache, a)
    fn, reason = DAMAGE[case]
    fn(path, cache, a) if case == "another-tensors-entry" else fn(path)
    with pytest.warns(CacheEntryWarning) as caught:
        res = drift(a, b, cache_dir=cache)
    ours = [w for w in caught if issubclass(w.category, CacheEntryWarning)]
    assert len(ours) == 1 and str(path) in str(ours[0].message) and reason in str(ours[0].message)
    assert res.meta["cache"]["rejected"] == 1 and res.meta["cache"]["hits"] == 2 * n - 1
    assert_rows_close(res.rows, cold.rows)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheEntryWarning)
        again = drift(a, b, cache_dir=cache)  # the entry was rewritten: a clean, full hit
    assert again.meta["cache"]["hits"] == 2 * n and again.meta["cache"]["rejected"] == 0


def test_load_factorization_never_returns_another_tensors_factors(llama_pair, tmp_path):
    """What restore relies on: the factors returned are those of the tensor asked for."""
    a, _ = llama_pair
    cache = FactorCache(tmp_path / "cache")
    ck = Checkpoint(a)
    f1, _ = load_factorization(ck, Q1, cache)
    target = entry_path(cache.root, a, Q0)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(entry_path(cache.root, a, Q1), target)
    with pytest.warns(CacheEntryWarning, match="another request"):
        f0, hit = load_factorization(ck, Q0, cache)
    W0 = ck.matrix(Q0)
    assert not hit and not torch.equal(f0.S, f1.S)
    assert torch.allclose((f0.U * f0.S) @ f0.Vh, W0, atol=1e-5)


def test_entries_carry_identity_and_checksum(llama_pair, tmp_path):
    a, _ = llama_pair
    cache = FactorCache(tmp_path / "cache")
    load_factorization(Checkpoint(a), Q0, cache)
    meta, _ = read_entry(entry_path(cache.root, a))
    assert {"fingerprint", "tensor", "dtype", "request", "rank", "method", "checksum", "checkpoint"} <= set(meta)
    assert meta["tensor"] == Q0 and meta["dtype"] == "float32" and meta["request"] == "gram"
    assert meta["checksum"].startswith(("xxh3_64:", "crc32:"))


def test_a_failed_cache_write_leaves_nothing(llama_pair, tmp_path, monkeypatch):
    import safetensors.torch

    a, _ = llama_pair

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", fail)
    cache = FactorCache(tmp_path / "cache")
    with pytest.raises(OSError, match="disk full"):
        load_factorization(Checkpoint(a), Q0, cache)
    assert [p.name for p in cache.root.rglob("*") if p.is_file()] == [MEMO_FILE]


@pytest.mark.parametrize(
    "content",
    ['["not", "an", "object"]', '{"x": 1, "y": null}', '{"k": "not-a-digest"}', "{ not json", "\xff\xfe"],
    ids=["list", "non-string-values", "not-a-digest", "invalid-json", "not-utf8"],
)
def test_malformed_fingerprint_memo_is_rebuilt_with_a_warning(content, llama_pair, tmp_path):
    a, _ = llama_pair
    expected = Checkpoint(a).fingerprint()
    memo_dir = tmp_path / "cache"
    memo_dir.mkdir()
    (memo_dir / MEMO_FILE).write_bytes(content.encode("latin-1"))
    with pytest.warns(UserWarning, match=MEMO_FILE):
        assert Checkpoint(a).fingerprint(memo_dir) == expected
    memo = json.loads((memo_dir / MEMO_FILE).read_text())
    assert isinstance(memo, dict) and expected not in memo and len(memo) == 1


def test_crc32_entries_from_an_installation_without_xxhash_are_used(llama_pair, tmp_path, monkeypatch):
    import spindoctor.spectral.cache_entry as ce

    a, b = llama_pair
    cache = tmp_path / "cache"
    with monkeypatch.context() as m:
        m.setattr(ce, "available", lambda: ("crc32",))
        n = len(drift(a, b, cache_dir=cache).rows)
        assert read_entry(entry_path(cache, a))[0]["checksum"].startswith("crc32:")
        assert drift(a, b, cache_dir=cache).meta["cache"]["hits"] == 2 * n
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheEntryWarning)
        assert drift(a, b, cache_dir=cache).meta["cache"]["hits"] == 2 * n


def test_cli_reports_a_recomputed_entry_in_one_line(llama_pair, tmp_path, capsys):
    from .test_checkpoints import run

    a, b = llama_pair
    cache = tmp_path / "cache"
    drift(a, b, cache_dir=cache)
    garbage(entry_path(cache, a))
    code, _, err = run(capsys, "drift", a, b, "--out", tmp_path / "o", "--cache", cache, "--no-figures")
    assert code == 0
    assert err.strip().splitlines() == [f"warning: factor cache entry {entry_path(cache, a)} is unreadable "
                                        "(SafetensorError); recomputing it"]
