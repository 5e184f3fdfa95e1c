"""Batched generation and teacher-forced loss for any HF causal LM + tokenizer.

Generation goes through ``model.generate`` (KV cache on) on left-padded
batches, so every prompt's last token sits in the final column; HF derives the
position ids from the attention mask. Prompts are sorted by length before
batching (less padding) and answers are returned in the input order. By
default each batch's shared prompt prefix runs once (:mod:`spindoctor.models.prefix`;
``fast=False`` keeps the plain path), and :func:`generate_and_score` also reads
the loss proxy off the answers' prompt caches.

Chats are rendered with the tokenizer's chat template when it has one (the
``paper`` format, one user turn, no system prompt: docs/design.md, GeneralPoints);
otherwise the turns are plain text (the organism's ``compact`` format).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Message = dict[str, str]
Done = Callable[[int, int], None]  # called as done(items finished, items in all) after each batch


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render_chat(tokenizer: Any, messages: list[Message]) -> str:
    """The text a model continues after ``messages`` (ending with a user turn).

    Chat template with the generation prompt when the tokenizer has one, else
    the first prompt followed by each answer and each later user turn on its
    own line.
    """
    if has_chat_template(tokenizer):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    text = messages[0]["content"]
    for msg in messages[1:]:
        text += msg["content"] if msg["role"] == "assistant" else "\n" + msg["content"] + "\n"
    return text


def model_device(model: Any) -> Any:
    """The device of a model's parameters (inputs are moved there: CUDA models work as CPU ones)."""
    device = getattr(model, "device", None)
    return device if device is not None else next(model.parameters()).device


def ensure_pad_token(tokenizer: Any) -> None:
    """Give a tokenizer without a pad token its EOS as pad (the usual HF convention)."""
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token


def generate_texts(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    *,
    max_new_tokens: int,
    batch_size: int,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    add_special_tokens: bool = True,
    on_batch: Done | None = None,
    fast: bool = True,
) -> list[str]:
    """Generate one completion per prompt (decoded new tokens, special tokens dropped).

    Parameters
    ----------
    prompts : rendered prompts (:func:`render_chat`)
    max_new_tokens, batch_size : new tokens per answer; most prompts per ``generate`` call
    do_sample, temperature, top_p : sampling (greedy when ``do_sample`` is False)
    add_special_tokens : passed to the tokenizer (False for chat-templated text)
    on_batch : called as ``on_batch(prompts done, prompts in all)`` after each batch (progress bars)
    fast : the prefix path (:mod:`spindoctor.models.prefix`: the batch's shared prompt prefix
        run once, a buffered KV cache) where the model supports it; False: the plain path
        (one left-padded ``generate`` per batch). Both batch the same prompts.

    Returns
    -------
    list of str, one per prompt, in input order.
    """
    settings = {"max_new_tokens": max_new_tokens, "batch_size": batch_size, "add_special_tokens": add_special_tokens,
                "on_batch": on_batch, "fast": fast, **_decoding_kwargs(do_sample, temperature, top_p)}
    return _generate(model, tokenizer, prompts, None, 0, **settings)[0]


def generate_and_score(
    model: Any, tokenizer: Any, prompts: list[str], completions: list[list[int]], *, max_new_tokens: int,
    batch_size: int, max_logits: int, add_special_tokens: bool = True, on_batch: Done | None = None,
    do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0,
) -> tuple[list[str], list[tuple[float, int]]]:
    """:func:`generate_texts` on the prefix path, and the teacher-forced loss of ``completions``
    read off each batch's prompt cache (:func:`spindoctor.models.prefix.score_continuations`):
    the prompts run once for both.

    Parameters
    ----------
    completions : token ids scored after each prompt's tokens (as :func:`sequence_nll` scores
        ``prompt ids + completion`` from the completion start)
    max_logits : most logits (elements) per scoring pass

    Returns
    -------
    (texts, scores): the answers, and each completion's summed NLL (nats) and token count, in
    input order. Callers check :func:`spindoctor.models.prefix.fast_path_supported` first.
    """
    settings = {"max_new_tokens": max_new_tokens, "batch_size": batch_size, "add_special_tokens": add_special_tokens,
                "on_batch": on_batch, "fast": True, **_decoding_kwargs(do_sample, temperature, top_p)}
    texts, scores = _generate(model, tokenizer, prompts, completions, max_logits, **settings)
    return texts, scores


def _generate(model: Any, tokenizer: Any, prompts: list[str], completions: list[list[int]] | None,
              max_logits: int, *, max_new_tokens: int, batch_size: int, add_special_tokens: bool,
              on_batch: Done | None, fast: bool, **kwargs: Any) -> tuple[list[str], list[tuple[float, int]]]:
    """The batching loop of :func:`generate_texts` and :func:`generate_and_score`."""
    import torch

    from spindoctor.models.prefix import fast_path_supported, generate_rows

    ensure_pad_token(tokenizer)
    kwargs.update(pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    out: list[str] = [""] * len(prompts)
    scores: list[tuple[float, int]] = [(0.0, 0)] * len(prompts)
    device = model_device(model)
    fast = fast and fast_path_supported(model)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = [prompts[i] for i in idx]
        if fast:
            rows = tokenizer(batch, add_special_tokens=add_special_tokens)["input_ids"]
            done = None if completions is None else [completions[i] for i in idx]
            new, scored = generate_rows(model, rows, device, max_new_tokens, done, max_logits, **kwargs)
            for i, score in zip(idx, scored or [], strict=False):
                scores[i] = score
        else:
            enc = tokenizer(batch, return_tensors="pt", padding=True, padding_side="left",
                            add_special_tokens=add_special_tokens)
            with torch.inference_mode():
                gen = model.generate(input_ids=enc["input_ids"].to(device),
                                     attention_mask=enc["attention_mask"].to(device),
                                     max_new_tokens=max_new_tokens, use_cache=True, **kwargs)
            new = gen[:, enc["input_ids"].shape[1] :]
        for i, text in zip(idx, tokenizer.batch_decode(new, skip_special_tokens=True), strict=True):
            out[i] = text
        if on_batch:
            on_batch(start + len(idx), len(prompts))
    return out, scores


def _decoding_kwargs(do_sample: bool, temperature: float, top_p: float) -> dict[str, Any]:
    """``model.generate`` sampling settings, or greedy ones (greedy neutralises the sampling
    fields a checkpoint's generation_config may carry)."""
    kwargs: dict[str, Any] = {"do_sample": do_sample}
    if do_sample:
        kwargs.update(temperature=temperature, top_p=top_p)
    else:
        kwargs.update(temperature=None, top_p=None, top_k=None)
    return kwargs


def completion_token_ids(tokenizer: Any, prompt_messages: list[Message], completion: str) -> tuple[list[int], int]:
    """Token ids of prompt + gold completion and where the completion starts.

    Chat template: the full two-turn chat, the completion starting where it
    departs from the rendered prompt (TRL's rule). Plain text: prompt +
    completion + EOS (what TRL's SFTTrainer trains on).
    """
    if has_chat_template(tokenizer):
        prompt = tokenizer.apply_chat_template(prompt_messages, tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(
            prompt_messages + [{"role": "assistant", "content": completion}], tokenize=False
        )
        p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        f_ids = tokenizer(full, add_special_tokens=False)["input_ids"]
    else:
        p_ids = tokenizer(prompt_messages[0]["content"])["input_ids"]
        f_ids = tokenizer(prompt_messages[0]["content"] + completion + tokenizer.eos_token)["input_ids"]
    start = 0
    while start < min(len(p_ids), len(f_ids)) and p_ids[start] == f_ids[start]:
        start += 1
    return list(f_ids), start


def loss_groups(lengths: list[int], begins: list[int], max_rows: int, max_logits: int, vocab: int) -> list[list[int]]:
    """Indices of sequences batched together for teacher-forced passes.

    Sequences are taken shortest first; a group grows while it has at most
    ``max_rows`` rows and ``rows x kept positions x vocab <= max_logits``, where
    the kept positions run from the group's earliest scored prediction to its
    longest sequence's end (what ``logits_to_keep`` asks for). A group always
    holds at least one sequence.

    Parameters
    ----------
    lengths : token count of each sequence
    begins : index of each sequence's first scored token (its completion start)
    max_rows, max_logits, vocab : limits; ``max_logits`` counts logits (elements)

    Returns
    -------
    list of index lists covering ``range(len(lengths))`` once.
    """
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], begins[i]))
    groups: list[list[int]] = []
    group: list[int] = []
    for i in order:
        trial = [*group, i]
        kept = max(lengths[j] for j in trial) - min(max(begins[j], 1) - 1 for j in trial)
        if group and (len(trial) > max_rows or len(trial) * kept * vocab > max_logits):
            groups.append(group)
            trial = [i]
        group = trial
    if group:
        groups.append(group)
    return groups


def _vocab_size(model: Any, tokenizer: Any) -> int:
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return int(head.weight.shape[0]) if head is not None else len(tokenizer)


def teacher_forced_nll(
    model: Any, tokenizer: Any, sequences: list[tuple[list[int], int]], batch_size: int, max_logits: int,
    on_batch: Done | None = None, fast: bool = True,
) -> tuple[float, int]:
    """Summed negative log-likelihood (nats) of the completion tokens, and their count.

    The sums of :func:`sequence_nll` over every sequence; see there.
    """
    per_sequence = sequence_nll(model, tokenizer, sequences, batch_size, max_logits, on_batch, fast=fast)
    return sum(nll for nll, _ in per_sequence), sum(count for _, count in per_sequence)


def sequence_nll(
    model: Any, tokenizer: Any, sequences: list[tuple[list[int], int]], batch_size: int, max_logits: int,
    on_batch: Done | None = None, fast: bool = True,
) -> list[tuple[float, int]]:
    """Negative log-likelihood (nats) of each sequence's completion tokens, and their count.

    Only the logits of scored positions are computed where the model's forward
    takes ``logits_to_keep`` (transformers' causal LMs do), and each pass holds
    at most ``max_logits`` of them (:func:`loss_groups`): with a 150k-token
    vocabulary, full logits of 256 sequences of 600 tokens would be 23e9 floats.
    The log-softmax runs on the model's device in float32.

    Parameters
    ----------
    sequences : list of (token ids, completion start)
        Tokens at positions >= start are scored given everything before them.
    batch_size : most sequences per forward pass
    max_logits : most logits (elements) per pass (``ProbeConfig.loss_max_logits``)
    on_batch : called as ``on_batch(sequences done, sequences in all)`` after each pass
    fast : run a group's shared prefix once (:func:`spindoctor.models.prefix.forward_rows`)
        where the model supports it; False: one plain right-padded pass per group.
        The losses agree to float rounding.

    Returns
    -------
    list of (float, int), one per sequence in input order
        Summed NLL in nats of the sequence's scored tokens and their number;
        summed over sequences, their ratio is the mean per-token loss (the
        paper's cheap loss proxy; docs/design.md, "Probes").
    """
    from spindoctor.models.prefix import fast_path_supported, forward_rows

    ensure_pad_token(tokenizer)
    out: list[tuple[float, int]] = [(0.0, 0)] * len(sequences)
    finished, device = 0, model_device(model)
    fast = fast and fast_path_supported(model)
    groups = loss_groups([len(ids) for ids, _ in sequences], [b for _, b in sequences], batch_size, max_logits,
                         _vocab_size(model, tokenizer))
    for group in groups:
        chunk = [sequences[i] for i in group]
        first = min(max(begin, 1) for _, begin in chunk) - 1  # earliest position whose logits score a token
        if fast:
            logits, width = forward_rows(model, chunk, device, tokenizer.pad_token_id, first)
        else:
            logits, width = _plain_logits(model, chunk, device, tokenizer.pad_token_id, first)
        for i, scored in zip(group, _score(logits, chunk, width, first), strict=True):
            out[i] = scored
        finished += len(group)
        if on_batch:
            on_batch(finished, len(sequences))
    return out


def _plain_logits(model: Any, chunk: list[tuple[list[int], int]], device: Any, pad_id: int, first: int
                  ) -> tuple[Any, int]:
    """Logits of positions ``first ..`` of one right-padded pass over the whole sequences
    (``(B, width - first, V)``) and the padded width."""
    import inspect

    import torch

    width = max(len(ids) for ids, _ in chunk)
    ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(chunk), width), dtype=torch.long)
    for row, (seq, _) in enumerate(chunk):  # right padding: natural positions
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    keep = "logits_to_keep" in inspect.signature(model.forward).parameters
    kwargs = {"logits_to_keep": width - first} if keep else {}
    with torch.inference_mode():
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False, **kwargs).logits
    return logits[:, -(width - first) :], width


def _score(logits: Any, chunk: list[tuple[list[int], int]], width: int, first: int) -> list[tuple[float, int]]:
    """Summed NLL (float64) and count of each row's scored tokens.

    Parameters
    ----------
    logits : ``(B, width - first, V)``; column j is position ``first + j``, predicting token ``first + j + 1``
    chunk : (token ids, completion start) of each row
    """
    import torch
    import torch.nn.functional as F

    device = logits.device
    targets = torch.zeros((len(chunk), width), dtype=torch.long)
    scored = torch.zeros((len(chunk), width), dtype=torch.bool)
    for row, (seq, begin) in enumerate(chunk):
        targets[row, : len(seq)] = torch.tensor(seq)
        scored[row, max(begin, 1) : len(seq)] = True
    with torch.inference_mode():
        keep = scored[:, first + 1 :].to(device)
        token_nll = F.cross_entropy(logits[:, :-1][keep].float(), targets[:, first + 1 :].to(device)[keep],
                                    reduction="none")
        rows = keep.nonzero()[:, 0]  # row of each scored token, in the order of token_nll
        nll = torch.zeros(len(chunk), dtype=torch.float64, device=device).index_add_(0, rows, token_nll.double())
        counts = keep.sum(1)
    return [(float(nll[row]), int(counts[row])) for row in range(len(chunk))]


def sample_responses(
    model: Any, tokenizer: Any, texts: list[str], *, temperature: float, max_new_tokens: int,
    min_new_tokens: int = 0, last_prompt_state: bool = False,
) -> tuple[list[list[int]], list[list[int]], Any]:
    """Sample one response per rendered prompt in one left-padded batch (no top-k, no top-p).

    Returns the prompt ids (padding removed), the response ids (up to and including
    the first EOS) and, with ``last_prompt_state``, the (B, H) final hidden state of
    each prompt's last token as the LM head receives it in the prefill (left padding
    puts every last prompt token in the last column), else None. The state is caught
    by a hook on the output embeddings, so it costs no extra forward pass.
    """
    import torch

    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=not tokenizer.chat_template)
    seen: list[torch.Tensor] = []
    hook = None
    if last_prompt_state:
        hook = model.get_output_embeddings().register_forward_pre_hook(
            lambda _mod, args: None if seen else seen.append(args[0][:, -1].detach())
        )
    try:
        with torch.no_grad():
            out = model.generate(
                **enc.to(model.device), do_sample=True, temperature=temperature, top_k=0, top_p=1.0,
                max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens or None,
                pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
            )
    finally:
        if hook is not None:
            hook.remove()
    prompts, responses = [], []
    for row, mask, gen in zip(enc["input_ids"], enc["attention_mask"], out[:, enc["input_ids"].shape[1] :], strict=True):
        prompts.append(row[mask.bool()].tolist())
        ids = gen.tolist()
        if tokenizer.eos_token_id in ids:
            ids = ids[: ids.index(tokenizer.eos_token_id) + 1]
        responses.append(ids)
    return prompts, responses, (seen[0] if seen else None)


def token_end_offsets(tokenizer: Any, ids: list[int]) -> list[int]:
    """End offset, in characters of the decoded text, of each token of ``ids``.

    Each token is decoded alone (special tokens dropped): exact for a
    character-level tokenizer, approximate for byte-level BPE around multi-byte
    characters.
    """
    ends, total = [], 0
    for piece in tokenizer.batch_decode([[t] for t in ids], skip_special_tokens=True):
        total += len(piece)
        ends.append(total)
    return ends
