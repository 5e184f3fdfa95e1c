"""Checkpoints of real architectures (tiny, random, built from configs): names, selection,
GPT-2 orientation, sharded vs single file, the cache, outputs, and the CLI's exit codes."""

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from spindoctor.cli import main
from spindoctor.spectral import Checkpoint, drift, parse_name, select_matrices

TINY = dict(vocab_size=48, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=1)


def tiny_model(arch: str):
    import transformers as tf

    torch.manual_seed(0)
    if arch == "gpt2":
        return tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=48, n_embd=16, n_layer=2, n_head=2, n_positions=32))
    cfg_cls, model_cls = {
        "llama": (tf.LlamaConfig, tf.LlamaForCausalLM), "qwen2": (tf.Qwen2Config, tf.Qwen2ForCausalLM),
        "mistral": (tf.MistralConfig, tf.MistralForCausalLM), "gemma": (tf.GemmaConfig, tf.GemmaForCausalLM),
    }[arch]
    extra = {"head_dim": 8} if arch == "gemma" else {}
    return model_cls(cfg_cls(**TINY, **extra))


def save_pair(model, root: Path, scale=0.02, shard=None) -> tuple[Path, Path]:
    a, b = root / "ref", root / "tuned"
    model.save_pretrained(a)
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        for p in model.parameters():
            if p.ndim == 2:
                p.add_(scale * torch.randn(p.shape, generator=g))
    model.save_pretrained(b, **({"max_shard_size": shard} if shard else {}))
    return a, b


def assert_rows_close(rows_a: list[dict], rows_b: list[dict], tol: float = 1e-5) -> None:
    """Every metric of every matrix row equal within ``tol`` (NaN equals NaN)."""
    for x, y in zip(rows_a, rows_b, strict=True):
        for key, val in x.items():
            assert val == pytest.approx(y[key], abs=tol, nan_ok=True), key


@pytest.fixture(scope="module")
def llama_pair(tmp_path_factory):
    return save_pair(tiny_model("llama"), tmp_path_factory.mktemp("llama"))


@pytest.mark.parametrize(
    "name,layer,kind,conv1d",
    [
        ("model.layers.3.self_attn.q_proj.weight", 3, "q_proj", False),
        ("model.layers.12.mlp.down_proj.weight", 12, "down_proj", False),
        ("language_model.model.layers.7.self_attn.k_proj.weight", 7, "k_proj", False),
        ("model.language_model.layers.2.mlp.gate_proj.weight", 2, "gate_proj", False),
        ("transformer.h.5.attn.c_attn.weight", 5, "qkv", True),
        ("transformer.h.5.attn.c_proj.weight", 5, "o_proj", True),
        ("transformer.h.0.mlp.c_fc.weight", 0, "up_proj", True),
        ("transformer.h.0.mlp.c_proj.weight", 0, "down_proj", True),
        ("model.embed_tokens.weight", None, "embed", False),
        ("lm_head.weight", None, "lm_head", False),
    ],
    ids=["llama-q", "llama-down", "multimodal-nested", "multimodal-inner", "gpt2-qkv", "gpt2-attn-out",
         "gpt2-fc", "gpt2-mlp-proj", "embed", "lm_head"],
)
def test_parse_name(name, layer, kind, conv1d):
    info = parse_name(name)
    assert (info.layer, info.kind, info.conv1d) == (layer, kind, conv1d)


@pytest.mark.parametrize("arch", ["llama", "qwen2", "mistral", "gemma", "gpt2"])
def test_presets_on_real_architectures(arch, tmp_path):
    tiny_model(arch).save_pretrained(tmp_path)
    ck = Checkpoint(tmp_path)
    paper = select_matrices(ck, "paper")
    per_layer = 2 if arch == "gpt2" else 4  # gpt2: fused qkv + mlp.c_proj
    assert len(paper) == 2 * per_layer
    assert {i.layer for i in paper} == {0, 1}
    assert len(select_matrices(ck, "mlp")) == 2 * (2 if arch == "gpt2" else 3)
    all_ = select_matrices(ck, "all")
    assert any(i.kind == "embed" for i in all_)
    assert all(len(ck.shape(i.name)) == 2 for i in all_)
    assert [i.name for i in select_matrices(ck, "all", r"layers\.1\.|h\.1\.")] == [
        i.name for i in all_ if i.layer == 1
    ]


def test_gpt2_conv1d_orientation_matches_linear(tmp_path):
    """The same matrices stored as GPT-2 Conv1D (in, out) and as Linear (out, in) give identical metrics."""
    a, b = save_pair(tiny_model("gpt2"), tmp_path / "gpt2")
    ra = drift(a, b, matrices="mlp", cache_dir=None)
    for src in (a, b):  # rename to Llama-style names, transposing Conv1D weights to (out, in)
        sd = load_file(src / "model.safetensors")
        lin = {}
        for name, t in sd.items():
            info = parse_name(name)
            if info.kind in ("up_proj", "down_proj") and name.endswith("weight"):
                lin[f"model.layers.{info.layer}.mlp.{info.kind}.weight"] = t.T.contiguous()
        (tmp_path / f"lin_{src.name}").mkdir()
        save_file(lin, str(tmp_path / f"lin_{src.name}" / "model.safetensors"))
    rb = drift(tmp_path / "lin_ref", tmp_path / "lin_tuned", matrices="mlp", cache_dir=None)
    assert len(ra.rows) == len(rb.rows) == 4
    for x, y in zip(ra.rows, rb.rows, strict=True):
        assert (x["rows"], x["cols"]) == (y["rows"], y["cols"]) == ((64, 16) if x["kind"] == "up_proj" else (16, 64))
        for key in ("angle_u_mean", "angle_v_mean", "ds_rel_mean", "k0.5_u_mean", "k0.5_v_mean", "rot_share"):
            assert x[key] == pytest.approx(y[key], abs=1e-6), key


def test_sharded_and_single_file_give_identical_metrics(tmp_path):
    model = tiny_model("qwen2")
    a, b = save_pair(model, tmp_path / "single")
    model2 = tiny_model("qwen2")
    a2, b2 = save_pair(model2, tmp_path / "sharded", shard="4KB")
    assert (b2 / "model.safetensors.index.json").is_file()
    r1 = drift(a, b, matrices="all", cache_dir=None)
    r2 = drift(a2, b2, matrices="all", cache_dir=None)
    assert [r["name"] for r in r1.rows] == [r["name"] for r in r2.rows]
    for x, y in zip(r1.rows, r2.rows, strict=True):
        for key, val in x.items():
            if isinstance(val, float) and not math.isnan(val):
                assert val == y[key], key


def test_cache_hits_and_same_metrics(llama_pair, tmp_path):
    a, b = llama_pair
    cold = drift(a, b, cache_dir=tmp_path / "cache")
    warm = drift(a, b, cache_dir=tmp_path / "cache")
    n = len(cold.rows)
    assert cold.meta["cache"]["hits"] == 0 and warm.meta["cache"]["hits"] == 2 * n
    # same factors; only float32 BLAS rounding (memory layout of mmap-loaded factors) may differ
    assert_rows_close(cold.rows, warm.rows)
    # the reference is factorised once for every checkpoint it is compared with
    again = drift(a, a, cache_dir=tmp_path / "cache")
    assert again.meta["cache"]["hits"] == 2 * n


def test_outputs_written(llama_pair, tmp_path):
    a, b = llama_pair
    res = drift(a, b, matrices="linear", cache_dir=None, k=[0.5, 4])
    paths = res.save(tmp_path / "out")
    doc = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert doc["schema"] == "spindoctor.drift/1" and doc["n_matrices"] == len(doc["matrices"]) == 14
    assert doc["config"]["k"] == [0.5, 4]
    header = (tmp_path / "out" / "per_matrix.csv").read_text().splitlines()[0].split(",")
    assert {"name", "layer", "kind", "k0.5_u_mean", "k4_v_max", "rot_share", "ds_rel_median"} <= set(header)
    spectra = load_file(tmp_path / "out" / "spectra.safetensors")
    assert "model.layers.0.self_attn.q_proj.weight/angle_u" in spectra
    for name in ("singular_values.png", "principal_angles.png", "heatmap_angle.png", "heatmap_ds_rel.png"):
        p = tmp_path / "out" / name
        assert p in paths and p.read_bytes()[:4] == b"\x89PNG"


def run(capsys, *args):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_drift_json(llama_pair, tmp_path, capsys):
    a, b = llama_pair
    code, out, err = run(capsys, "drift", a, b, "--out", tmp_path / "o", "--no-cache", "--json", "--no-figures")
    assert code == 0, err
    obj = json.loads(out)
    assert obj["n_matrices"] == 8 and obj["overall"]["rel_update"] > 0


def _corrupt(src: Path, dst: Path, edit) -> Path:
    dst.mkdir(parents=True)
    sd = load_file(src / "model.safetensors")
    edit(sd)
    save_file(sd, str(dst / "model.safetensors"))
    (dst / "config.json").write_text((src / "config.json").read_text())
    return dst


def _set_nan(sd):
    sd["model.layers.1.self_attn.k_proj.weight"][0, 0] = float("nan")


def _shrink(sd):
    sd["model.layers.0.mlp.down_proj.weight"] = sd["model.layers.0.mlp.down_proj.weight"][:, :5].contiguous()


@pytest.mark.parametrize(
    "case,needle",
    [("not-a-checkpoint", "not a checkpoint"), ("missing-tensor", "missing"), ("shape", "shape mismatch"),
     ("nan", "NaN"), ("arch", "architectures differ"), ("bad-k", "--k"), ("bad-dtype", "--dtype"),
     ("bad-preset", "--matrices"), ("no-such-path", "not found"), ("bad-workers", "--workers")],
)
def test_cli_errors_exit_2(case, needle, llama_pair, tmp_path, capsys):
    a, b = llama_pair
    extra: list = []
    if case == "not-a-checkpoint":
        b = tmp_path / "empty"
        b.mkdir()
    elif case == "missing-tensor":
        b = _corrupt(b, tmp_path / "m", lambda sd: sd.pop("model.layers.1.mlp.down_proj.weight"))
    elif case == "shape":
        b = _corrupt(b, tmp_path / "s", _shrink)
    elif case == "nan":
        b = _corrupt(b, tmp_path / "n", _set_nan)
    elif case == "arch":
        b = _corrupt(b, tmp_path / "q", lambda sd: None)
        cfg = json.loads((b / "config.json").read_text())
        (b / "config.json").write_text(json.dumps({**cfg, "model_type": "qwen2"}))
    elif case == "no-such-path":
        b = tmp_path / "nope"
    else:
        extra = {"bad-k": ["--k", "0.5,1.5"], "bad-dtype": ["--dtype", "float16"],
                 "bad-preset": ["--matrices", "everything"], "bad-workers": ["--workers", "0"]}[case]
    code, _, err = run(capsys, "drift", a, b, "--out", tmp_path / "o", "--no-cache", *extra)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and needle in err
