"""Malformed checkpoints and bad drift inputs: exit 2, one line on stderr, nothing written.

Every input is checked before the work starts, so no case leaves an output
folder, a cache folder or a temporary file behind.
"""

import json
import shutil

import pytest
import torch
from safetensors.torch import save_file

from .test_checkpoints import run, save_pair, tiny_model

INDEX = "model.safetensors.index.json"


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    single = save_pair(tiny_model("llama"), root / "single")
    sharded = save_pair(tiny_model("llama"), root / "sharded", shard="4KB")
    assert (sharded[1] / INDEX).is_file()
    return single, sharded


def copy_of(src, dst):
    shutil.copytree(src, dst)
    return dst


def shards(folder):
    return sorted(folder.glob("model-*.safetensors"))


def snapshot(root):
    return {str(p.relative_to(root)): (p.is_dir(), p.stat().st_size if p.is_file() else 0, p.stat().st_mtime_ns)
            for p in root.rglob("*")}


def corrupt_shard(t):
    f = shards(t)[0]
    f.write_bytes(b"\xff" * 16 + f.read_bytes()[16:])


def truncate_shard(t):
    f = shards(t)[-1]
    f.write_bytes(f.read_bytes()[:-100])


def truncate_single(t):
    f = t / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-100])


def missing_shard(t):
    shards(t)[0].unlink()


def index_disagrees(t):
    doc = json.loads((t / INDEX).read_text())
    files = sorted(set(doc["weight_map"].values()))
    name = next(k for k, v in doc["weight_map"].items() if v == files[0])
    doc["weight_map"][name] = files[1]
    (t / INDEX).write_text(json.dumps(doc))


def write(name, text):
    def edit(t):
        (t / name).write_text(text)
    return edit


def bin_beside_unrelated(t):
    for f in list(t.glob("*.safetensors")) + [t / INDEX]:
        f.unlink(missing_ok=True)
    (t / "pytorch_model.bin").write_bytes(b"not read: pickle is never loaded")
    save_file({"lora_A": torch.zeros(2, 2)}, str(t / "adapter_model.safetensors"))


def bin_beside_unrelated_model(t):
    bin_beside_unrelated(t)
    (t / "adapter_model.safetensors").rename(t / "model.safetensors")


# case: (which pair, how to damage the tuned copy, extra flags, needle in the error line)
CASES = {
    "corrupt-shard": ("sharded", corrupt_shard, [], "not a readable safetensors"),
    "truncated-shard": ("sharded", truncate_shard, [], "not a readable safetensors"),
    "truncated-file": ("single", truncate_single, [], "not a readable safetensors"),
    "missing-shard": ("sharded", missing_shard, [], "missing"),
    "index-disagrees-with-shards": ("sharded", index_disagrees, [], "disagrees with its shards"),
    "index-not-an-object": ("sharded", write(INDEX, "[1, 2]"), [], "JSON object"),
    "index-not-json": ("sharded", write(INDEX, "{"), [], "not a valid safetensors index"),
    "index-bad-weight-map": ("sharded", write(INDEX, '{"weight_map": {"x": 3}}'), [], "weight_map"),
    "config-not-an-object": ("single", write("config.json", '"llama"'), [], "JSON object"),
    "config-not-json": ("single", write("config.json", "{"), [], "config.json"),
    "bin-beside-unrelated-safetensors": ("single", bin_beside_unrelated, [], "never pickle"),
    "bin-beside-unrelated-model-file": ("single", bin_beside_unrelated_model, [], "missing from"),
    "bad-regex": ("single", None, ["--regex", "("], "--regex"),
    "bad-figure-matrix": ("single", None, ["--figure-matrix", "q_proj", "--figure-matrix", "(["], "--figure-matrix"),
    "bad-k-text": ("single", None, ["--k", "half"], "--k"),
    "bad-device": ("single", None, ["--device", "tpu"], "--device"),
    "missing-cuda-device": ("single", None, ["--device", "cuda:7"], "cuda:7"),
    "randomized-without-rank": ("single", None, ["--method", "randomized"], "rank"),
    "zero-rank": ("single", None, ["--method", "randomized", "--rank", "0"], "--rank"),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_malformed_input_exits_2_and_writes_nothing(case, pairs, tmp_path, capsys):
    which, damage, extra, needle = CASES[case]
    if case == "missing-cuda-device" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    a, b = dict(zip(("single", "sharded"), pairs, strict=True))[which]
    if damage is not None:
        b = copy_of(b, tmp_path / "tuned")
        damage(b)
    before = snapshot(tmp_path)
    code, _, err = run(capsys, "drift", a, b, "--out", tmp_path / "out", "--cache", tmp_path / "cache", *extra)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and needle in err, err
    assert snapshot(tmp_path) == before


def user_file(path):
    path.write_text("keep me")


def user_folder(path):
    path.mkdir()
    (path / "notes.txt").write_text("keep me")


def other_schema(path):
    path.mkdir()
    (path / "metrics.json").write_text(json.dumps({"schema": "someone.else/1"}))


def drift_output_plus_user_file(path):
    path.mkdir()
    (path / "metrics.json").write_text(json.dumps({"schema": "spindoctor.drift/1"}))
    (path / "notes.txt").write_text("keep me")


@pytest.mark.parametrize(
    "target, make, needle",
    [("--out", user_file, "not a folder"), ("--out", user_folder, "not a drift output folder"),
     ("--out", other_schema, "not a drift output folder"),
     ("--out", drift_output_plus_user_file, "not a drift output folder"),
     ("--cache", user_file, "not a folder")],
    ids=["out-is-a-file", "out-is-a-user-folder", "out-has-another-schema", "out-drift-folder-with-user-file",
         "cache-is-a-file"],
)
def test_out_or_cache_that_may_not_be_replaced_exits_2(target, make, needle, pairs, tmp_path, capsys):
    (a, b), _ = pairs
    path = tmp_path / "target"
    make(path)
    before = snapshot(tmp_path)
    args = ["--out", path, "--cache", tmp_path / "cache"] if target == "--out" else ["--out", tmp_path / "o",
                                                                                      "--cache", path]
    code, _, err = run(capsys, "drift", a, b, *args)
    assert code == 2 and len(err.strip().splitlines()) == 1 and needle in err and target in err, err
    assert snapshot(tmp_path) == before
