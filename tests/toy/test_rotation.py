"""The rotation toy: the exact gauge identity, and what fine-tuning moves."""

import json

import numpy as np
import pytest

from spindoctor.cli import main
from spindoctor.toy.rotation import (
    gauge_identity,
    per_index_angles_deg,
    random_rotation,
    train_two_factor,
)


@pytest.mark.parametrize("angle", [0.0, 10.0, 45.0], ids=["0deg", "10deg", "45deg"])
def test_gauge_identity_is_exact_and_rotates_vectors(angle):
    g = gauge_identity(n=16, angle_deg=angle, seed=1)
    assert g["product_rel_error"] < 1e-13
    assert g["sv_max_rel_change_A"] < 1e-12
    assert g["mean_angle_right_vectors_A_deg"] == pytest.approx(angle, abs=0.5)


def test_random_rotation_is_orthogonal_with_the_stated_angle():
    r = random_rotation(6, np.radians(20), np.random.default_rng(0))
    assert np.allclose(r @ r.T, np.eye(6), atol=1e-12)
    assert np.degrees(np.arccos((np.trace(r) - 0) / 6)) == pytest.approx(20, abs=1e-6)


def test_angle_of_a_basis_to_itself_is_zero_and_sign_blind():
    u = np.linalg.qr(np.random.default_rng(0).standard_normal((8, 8)))[0]
    assert np.allclose(per_index_angles_deg(u, u), 0.0, atol=1e-9)
    assert np.allclose(per_index_angles_deg(u, -u), 0.0, atol=1e-9)


def test_fine_tuning_moves_vectors_more_than_values():
    result = train_two_factor(d=16, shift=0.05, steps=800, seed=0).summary()
    assert result["final_loss"] < 1e-6
    assert result["sv_mean_rel_change_A"] < 0.02
    assert result["angle_tail_mean_deg"] > result["angle_head_mean_deg"]
    assert result["angle_max_deg"] > 5.0


def test_no_task_change_moves_nothing():
    result = train_two_factor(d=12, shift=0.0, steps=3000, seed=0).summary()
    assert result["product_rel_change"] < 1e-6 and result["angle_max_deg"] < 1e-3


def test_toy_cli_writes_json_and_png(tmp_path, capsys):
    assert main(["toy", "rotation", "--out", str(tmp_path), "--json"]) == 0
    numbers = json.loads(capsys.readouterr().out)
    assert numbers["gauge_identity"]["product_rel_error"] < 1e-13
    assert (tmp_path / "toy.png").stat().st_size > 1000
    assert json.loads((tmp_path / "toy.json").read_text())["fine_tune"] == numbers["fine_tune"]
