"""The restoration edit: definition (float64 golden), identities, clipping, selection grammar."""

import pytest
import torch

from spindoctor.errors import UserError
from spindoctor.restore.edit import restore_count, restore_matrix, restored_indices
from spindoctor.restore.select import block_label, equal_blocks, parse_k, parse_layers
from spindoctor.spectral.svd import Factorization


def thin_svd(W: torch.Tensor) -> Factorization:
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    return Factorization(U, S, Vh)


def pair(shape=(7, 5), seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    W_ref = torch.randn(*shape, generator=g, dtype=dtype)
    W_tuned = W_ref + 0.3 * torch.randn(*shape, generator=g, dtype=dtype)
    return W_ref, W_tuned, thin_svd(W_ref), thin_svd(W_tuned)


def by_definition(f_ref, f_tuned, k_top, k_tail, mode):
    """The docs/design.md formula, literally: concatenate columns, then U diag(s) V^T."""
    n = f_tuned.rank
    mid = slice(k_top, n - k_tail)
    U = torch.cat([f_ref.U[:, :k_top], f_tuned.U[:, mid], f_ref.U[:, n - k_tail:]], dim=1)
    Vh = torch.cat([f_ref.Vh[:k_top], f_tuned.Vh[mid], f_ref.Vh[n - k_tail:]], dim=0)
    s = f_tuned.S.clone()
    if mode == "full":
        s[:k_top] = f_ref.S[:k_top]
        if k_tail:
            s[n - k_tail:] = f_ref.S[n - k_tail:]
    return (U * s) @ Vh


@pytest.mark.parametrize("mode", ["direction", "full"])
@pytest.mark.parametrize(("k_top", "k_tail"), [(1, 0), (2, 1), (0, 2), (3, 2), (5, 0)],
                         ids=["top1", "top2-tail1", "tail2", "top3-tail2", "all"])
@pytest.mark.parametrize("shape", [(7, 5), (5, 7), (6, 6)], ids=["tall", "wide", "square"])
def test_edit_matches_the_definition(mode, k_top, k_tail, shape):
    W_ref, W_tuned, f_ref, f_tuned = pair(shape)
    r = min(shape)
    k_top, k_tail = min(k_top, r), min(k_tail, r - min(k_top, r))
    got = restore_matrix(W_tuned, f_ref, f_tuned, k_top, k_tail, mode)
    torch.testing.assert_close(got, by_definition(f_ref, f_tuned, k_top, k_tail, mode), rtol=0, atol=1e-12)


def test_restoring_nothing_returns_the_tuned_matrix_bitwise():
    _, W_tuned, f_ref, f_tuned = pair()
    assert restore_matrix(W_tuned, f_ref, f_tuned, 0, 0) is W_tuned


@pytest.mark.parametrize(("k_top", "k_tail"), [(5, 0), (0, 5), (2, 3)], ids=["all-top", "all-tail", "split"])
def test_full_mode_over_the_whole_rank_gives_the_reference(k_top, k_tail):
    W_ref, W_tuned, f_ref, f_tuned = pair()
    got = restore_matrix(W_tuned, f_ref, f_tuned, k_top, k_tail, "full")
    torch.testing.assert_close(got, W_ref, rtol=0, atol=1e-12)


def test_direction_mode_keeps_tuned_singular_values():
    _, W_tuned, f_ref, f_tuned = pair()
    got = restore_matrix(W_tuned, f_ref, f_tuned, 5, 0, "direction")
    torch.testing.assert_close(torch.linalg.svdvals(got), f_tuned.S, rtol=0, atol=1e-12)


def test_float32_full_restore_is_within_stated_tolerance():
    W_ref, W_tuned, f_ref, f_tuned = pair((64, 48), dtype=torch.float32)
    got = restore_matrix(W_tuned, f_ref, f_tuned, 48, 0, "full")
    assert (torch.linalg.norm(got - W_ref) / torch.linalg.norm(W_ref)) < 1e-5


def test_tail_is_clipped_to_the_rank():
    assert restored_indices(5, 3, 9).tolist() == [0, 1, 2, 3, 4]
    assert restored_indices(5, 0, 0).numel() == 0
    with pytest.raises(ValueError):
        restored_indices(5, 6, 0)


def test_shape_mismatch_is_rejected():
    _, W_tuned, f_ref, _ = pair((7, 5))
    _, _, _, f_other = pair((5, 7))
    with pytest.raises(ValueError, match="shape"):
        restore_matrix(W_tuned, f_ref, f_other, 1, 0)


@pytest.mark.parametrize(("k", "rank", "count"), [(0, 10, 0), (0.0, 10, 0), (0.2, 10, 2), (0.25, 10, 3),
                                                  (1.0, 7, 7), (3, 10, 3), (100, 5, 5)],
                         ids=["zero", "zero-frac", "20pct", "25pct-ceil", "all", "count", "count-clipped"])
def test_restore_count(k, rank, count):
    assert restore_count(k, rank) == count


@pytest.mark.parametrize(("spec", "n", "layers"), [
    ("all", 4, [0, 1, 2, 3]), ("none", 4, []), ("0-1", 4, [0, 1]), ("0,2-3", 4, [0, 2, 3]),
    ("first:25%", 40, list(range(10))), ("last:25%", 40, list(range(30, 40))),
    ("middle:50%", 40, list(range(10, 30))), ("first:10%", 4, [0]),
], ids=["all", "none", "range", "list", "first", "last", "middle", "at-least-one"])
def test_parse_layers(spec, n, layers):
    assert parse_layers(spec, n) == layers


@pytest.mark.parametrize("spec", ["0-9", "x", "first:0%", "3-1", "last:150%"])
def test_parse_layers_rejects(spec):
    with pytest.raises(UserError):
        parse_layers(spec, 4)


def test_equal_blocks_like_the_reference():
    assert [block_label(b) for b in equal_blocks(40, block_size=10)] == ["0-9", "10-19", "20-29", "30-39"]
    assert [len(b) for b in equal_blocks(10, n_blocks=4)] == [2, 3, 2, 3]
    assert equal_blocks(5, block_size=2)[-1] == [4]


@pytest.mark.parametrize(("text", "value"), [("0.2", 0.2), ("20%", 0.2), ("512", 512), ("0", 0), ("1.0", 1.0)])
def test_parse_k(text, value):
    assert parse_k(text) == value


@pytest.mark.parametrize("text", ["-1", "1.5", "abc", "200%"])
def test_parse_k_rejects(text):
    with pytest.raises(UserError):
        parse_k(text)
