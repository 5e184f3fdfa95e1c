"""Dealing: reference behaviour, reproducibility, de-duplication, disjoint partitions."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spindoctor.errors import UserError
from spindoctor.game.cards import FACE_RANKS
from spindoctor.game.deal import all_hands, count_eligible, deal_hands, in_probe_partition
from spindoctor.game.solver import can_make


@given(st.integers(0, 10_000), st.sampled_from(["id", "ood"]))
def test_deals_are_reproducible(seed, split):
    assert deal_hands(split, 5, seed) == deal_hands(split, 5, seed)


@pytest.mark.parametrize("split", ["id", "ood"])
def test_every_hand_is_solvable_and_unique(split):
    hands = deal_hands(split, 200, 0)
    assert len({h.key for h in hands}) == 200
    assert all(can_make(h.values) for h in hands)
    assert all(h.rule == ("face10" if split == "id" else "face11") for h in hands)


def test_ood_hands_always_hold_a_face_card():
    assert all(any(c.rank in FACE_RANKS for c in h.cards) for h in deal_hands("ood", 300, 1))


def test_id_deals_include_face_cards_and_duplicates():
    hands = deal_hands("id", 400, 2, unique=False)
    assert any(any(c.rank in FACE_RANKS for c in h.cards) for h in hands)
    assert any(len(set(c.rank for c in h.cards)) < 4 for h in hands)


@pytest.mark.parametrize("split", ["id", "ood"])
def test_train_and_probe_partitions_never_share_a_hand(split):
    train = deal_hands(split, 300, 3, partition="train")
    probe = all_hands(split, 4, partition="probe")
    assert not {h.key for h in train} & {h.key for h in probe}
    assert all(in_probe_partition(h.key) for h in probe)
    assert len(probe) == count_eligible(split, partition="probe")


def test_partition_sizes_add_up():
    for split in ("id", "ood"):
        total = count_eligible(split)
        assert count_eligible(split, partition="train") + count_eligible(split, partition="probe") == total


def test_asking_for_too_many_unique_hands_is_a_user_error():
    with pytest.raises(UserError, match="unique"):
        deal_hands("ood", 10_000, 0)


def test_five_card_deals_work():
    hands = deal_hands("ood", 5, 0, n_cards=5)
    assert all(len(h.cards) == 5 and can_make(h.values) for h in hands)
