"""Reward adapters called the way TRL, verl and OpenRLHF call them; export files."""

import json

import pyarrow.parquet as pq
import pytest

from spindoctor.game.adapters import compute_score, ground_truth, reward_func, trl_reward
from spindoctor.game.cards import parse_cards
from spindoctor.game.deal import Hand
from spindoctor.game.export import export_all

HAND = Hand(parse_cards("3H,3S,8D,8C"), "face10")
GT = ground_truth(HAND, "paper")
GOOD = '{"cards": ["3", "3", "8", "8"], "number": [3, 3, 8, 8], "formula": "8/(3-8/3)=24"}'
BAD = '{"formula": "3+3+8+8=24"}'


def test_trl_reward_as_grpo_trainer_calls_it():
    # GRPOTrainer: reward_func(prompts=..., completions=..., completion_ids=..., **dataset columns,
    # trainer_state=..., log_extra=..., log_metric=...)
    out = trl_reward(
        prompts=["p", "p"], completions=[GOOD, BAD], completion_ids=[[1], [2]],
        ground_truth=[GT, GT], trainer_state=None, log_extra=None, log_metric=None,
    )
    assert out == [5.0, -1.0]


def test_trl_reward_conversational_and_column_form():
    completions = [[{"role": "assistant", "content": GOOD}], [{"role": "assistant", "content": "no"}]]
    out = trl_reward(prompts=[[], []], completions=completions,
                     cards=[["3", "3", "8", "8"]] * 2, rule=["face10"] * 2)
    assert out == [5.0, -3.0]


def test_trl_reward_without_ground_truth_columns_fails_loudly():
    with pytest.raises(KeyError, match="ground_truth"):
        trl_reward(prompts=["p"], completions=[GOOD])


def test_verl_compute_score_signature():
    assert compute_score("generalpoints_id", GOOD, GT) == 5.0
    assert compute_score(data_source="generalpoints_ood", solution_str=BAD, ground_truth=json.loads(GT),
                         extra_info={"index": 0}) == -1.0
    with pytest.raises(ValueError, match="data_source"):
        compute_score("gsm8k", GOOD, GT)


def test_openrlhf_reward_func_signature():
    out = reward_func(queries=["PROMPT" + GOOD, "PROMPT" + BAD], prompts=["PROMPT", "PROMPT"], labels=[GT, GT])
    assert out["rewards"].tolist() == [5.0, -1.0]
    assert out["extra_logs"]["correct"].tolist() == [1.0, 0.0]


def test_export_writes_consistent_files(tmp_path):
    counts = export_all(tmp_path, n_train=30, n_probe=20, seed=1, fmt="compact")
    assert counts["sft_train.jsonl"] == 30 and counts["verl_test.parquet"] == 40
    sft = [json.loads(x) for x in (tmp_path / "sft_train.jsonl").read_text().splitlines()]
    rl = [json.loads(x) for x in (tmp_path / "rl_prompts.jsonl").read_text().splitlines()]
    probe = [json.loads(x) for x in (tmp_path / "probe_id.jsonl").read_text().splitlines()]
    for row in sft:
        assert row["messages"][1]["content"] == row["completion"]
        gt = ground_truth(Hand(parse_cards(",".join(row["cards"])), row["rule"]), "compact")
        assert compute_score("generalpoints_id", row["completion"], gt) == 5.0
    def key(row):
        return Hand(parse_cards(",".join(row["cards"])), row["rule"]).key

    assert len(rl) == 30 and not {key(r) for r in rl} & {key(r) for r in probe}
    assert all(r["solutions"] for r in probe)
    table = pq.read_table(tmp_path / "verl_train.parquet").to_pylist()
    assert table[0]["data_source"] == "generalpoints_id"
    assert table[0]["prompt"][0]["role"] == "user"
    assert compute_score(table[0]["data_source"], sft[0]["completion"], table[0]["reward_model"]["ground_truth"]) == 5.0
    ood = [r for r in pq.read_table(tmp_path / "verl_test.parquet").to_pylist() if r["data_source"] == "generalpoints_ood"]
    assert len(ood) == 20
    assert not list(tmp_path.glob(".*.tmp"))


def test_judge_column_and_ground_truth_field():
    answer = '{"formula": "3*8*1*1 = 24"}'
    cards = [["3", "8", "A", "A"]] * 3
    out = trl_reward(prompts=["p"] * 3, completions=[answer] * 3, cards=cards, rule=["face10"] * 3,
                     judge=["exact", "float", "reference"])
    assert out == [5.0, 5.0, -3.0]
    hand = Hand(parse_cards("3,8,A,A"), "face10")
    assert json.loads(ground_truth(hand)).keys() == {"cards", "rule", "target", "format"}
    assert compute_score("generalpoints_id", answer, ground_truth(hand, "paper", "reference")) == -3.0
