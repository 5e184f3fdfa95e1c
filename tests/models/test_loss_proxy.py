"""The teacher-forced loss proxy: grouping under a logits budget, and the loss against an
independent float64 computation whatever the grouping or the ``logits_to_keep`` path."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spindoctor.models.generate import loss_groups, teacher_forced_nll


@st.composite
def sequences_and_limits(draw):
    n = draw(st.integers(1, 30))
    lengths = draw(st.lists(st.integers(2, 50), min_size=n, max_size=n))
    begins = [draw(st.integers(0, L - 1)) for L in lengths]
    return lengths, begins, draw(st.integers(1, 8)), draw(st.integers(1, 5000)), draw(st.integers(1, 20))


@settings(max_examples=200, deadline=None)
@given(sequences_and_limits())
def test_groups_cover_every_sequence_once_within_limits(case):
    lengths, begins, max_rows, max_logits, vocab = case
    groups = loss_groups(lengths, begins, max_rows, max_logits, vocab)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    for g in groups:
        assert 1 <= len(g) <= max_rows
        kept = max(lengths[i] for i in g) - min(max(begins[i], 1) - 1 for i in g)
        assert len(g) == 1 or len(g) * kept * vocab <= max_logits


@pytest.mark.parametrize(
    "max_rows, max_logits, expected",
    [(256, 10**9, [[0, 1, 2]]), (2, 10**9, [[0, 1], [2]]), (256, 1, [[0], [1], [2]])],
    ids=["one-group", "row-limit", "budget-of-one-logit"],
)
def test_group_examples(max_rows, max_logits, expected):
    assert loss_groups([5, 6, 7], [2, 2, 3], max_rows, max_logits, vocab=10) == expected


def float64_nll(model, sequences) -> tuple[float, int]:
    """Each sequence alone, full logits, log-softmax in float64 (the independent reference)."""
    total, count = 0.0, 0
    with torch.no_grad():
        for ids, begin in sequences:
            logits = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0].double()
            logp = torch.log_softmax(logits[:-1], dim=-1)
            for pos in range(max(begin, 1), len(ids)):
                total -= float(logp[pos - 1, ids[pos]])
                count += 1
    return total, count


class NoLogitsToKeep(torch.nn.Module):
    """A causal LM whose forward does not take ``logits_to_keep`` (older or custom models)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, input_ids=None, attention_mask=None, use_cache=False):
        return self.inner(input_ids=input_ids, attention_mask=attention_mask, use_cache=use_cache)

    def get_output_embeddings(self):
        return self.inner.get_output_embeddings()


@pytest.mark.parametrize(
    "max_logits, hide_keep", [(2**28, False), (1, False), (2**28, True)],
    ids=["big-groups", "one-sequence-per-pass", "model-without-logits_to_keep"],
)
def test_loss_matches_float64_reference(tiny_organism_dir, max_logits, hide_keep):
    from spindoctor.models.load import load_causal_lm

    model, tok = load_causal_lm(tiny_organism_dir)
    model.eval()
    texts = [("R10 J 5 2 2 =24:", "J,5,2,2|(J-5)*2*2"), ("R11 10 A 3 =9:", "10,11,3|10-11+3*?"),
             ("R10 K K K K =40:", "K"), ("R11 A 2:", "11,2|11*2")]
    seqs = []
    for prompt, completion in texts:
        p = tok(prompt)["input_ids"]
        seqs.append((p + tok(completion + tok.eos_token, add_special_tokens=False)["input_ids"], len(p)))
    want, want_n = float64_nll(model, seqs)
    got, got_n = teacher_forced_nll(NoLogitsToKeep(model) if hide_keep else model, tok, seqs, 3, max_logits)
    assert got_n == want_n
    assert got == pytest.approx(want, rel=1e-5)
    assert math.isfinite(got)


@pytest.mark.parametrize("fast", [False, True], ids=["plain-path", "prefix-path"])
def test_each_pass_keeps_only_the_logits_it_scores(tiny_organism_dir, fast):
    from spindoctor.models.load import load_causal_lm

    model, tok = load_causal_lm(tiny_organism_dir)
    model.eval()
    shapes = []
    model.register_forward_hook(lambda mod, args, out: shapes.append(tuple(out.logits.shape)))
    prompt = tok("R10 J 5 2 2 =24:")["input_ids"]
    seqs = [(prompt + [5] * k, len(prompt)) for k in (3, 4, 5, 6)]
    vocab = model.get_output_embeddings().weight.shape[0]
    teacher_forced_nll(model, tok, seqs, 256, max_logits=2 * 7 * vocab, fast=fast)
    # completion of up to 6 tokens: 7 kept positions (the prompt's last one predicts the first);
    # the budget fits two rows of 7 positions; the prefix path first runs each group's shared
    # prefix on one row, keeping one logit
    scored = [(2, 5, vocab), (2, 7, vocab)]
    assert shapes == ([(1, 1, vocab), scored[0], (1, 1, vocab), scored[1]] if fast else scored)
