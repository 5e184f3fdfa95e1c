"""The fast path of generation and teacher-forced loss: the shared prompt prefix is computed once.

Every probe prompt of a split starts with the same tokens (the ``paper``
prompt's long task description, the chat template's system turn), so a
batch's shared prefix is run through the model once, on one row, and its keys
and values are copied into every row's cache; only the rest of each prompt is
run per row (docs/design.md, "Probes"). A batch row is laid out as

    [shared prefix (P tokens)] [left padding] [the rest of the prompt]

with an attention mask of 0 on the padding, so every real token keeps the
position it has in the plain path (position ids count the mask). The cache
writes into preallocated buffers instead of concatenating at every step
(``transformers``' ``DynamicLayer`` copies the whole cache once per token).
After generation the same cache scores given completions of each prompt (the
loss proxy's gold solutions, :func:`score_continuations`), so a prompt runs
once for answers and loss.

The answers and losses are those of the plain path up to float rounding (the
same sums in another order); greedy answers agree unless two tokens tie to
within it. :func:`fast_path_supported` says when a model qualifies; the callers
in :mod:`spindoctor.models.generate` fall back to the plain path otherwise.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

Ids = list[int]

MIN_PREFIX = 2  # a shorter shared prefix is not worth a separate forward pass


def shared_prefix_length(rows: list[Ids], limit: int) -> int:
    """Number of leading tokens every row shares, at most ``limit``.

    Parameters
    ----------
    rows : token ids of each sequence (at least one)
    limit : the most tokens the prefix may take (callers keep at least one
        token of every row out of it: the one whose logits are needed)

    Returns
    -------
    int in ``[0, limit]``; 0 when it would be below :data:`MIN_PREFIX`.
    """
    first, n = rows[0], 0
    limit = min(limit, min(len(r) for r in rows))
    while n < limit and all(r[n] == first[n] for r in rows):
        n += 1
    return n if n >= MIN_PREFIX else 0


def cache_kwarg(model: Any) -> str:
    """The name under which this model's forward takes its KV cache (``cache``; ``past_key_values``
    in transformers releases before the rename)."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def fast_path_supported(model: Any) -> bool:
    """True when the model is a decoder-only transformer whose every layer keeps a plain,
    full-attention KV cache (no sliding window, no recurrent state) and whose generation
    config asks for no special cache; the prefix path is exact only then."""
    from transformers.cache_utils import DynamicCache, DynamicLayer

    config = getattr(model, "config", None)
    if config is None or getattr(config, "is_encoder_decoder", False):
        return False
    gen = getattr(model, "generation_config", None)
    if gen is not None and getattr(gen, "cache_implementation", None):
        return False
    try:
        layers = DynamicCache(config=config).layers
    except Exception:  # noqa: BLE001 - a config DynamicCache cannot read: not a plain transformer
        return False
    return all(type(layer) is DynamicLayer for layer in layers)


@functools.cache
def _buffer_layer_class() -> type:
    from transformers.cache_utils import DynamicLayer

    class BufferLayer(DynamicLayer):
        """A ``DynamicLayer`` whose keys and values are views of preallocated
        ``(batch, heads, capacity, head_dim)`` buffers: an update writes the new positions in
        place instead of concatenating the whole cache."""

        def __init__(self, capacity: int):
            super().__init__()
            self.capacity, self.length = capacity, 0

        def lazy_initialization(self, key_states: Any, value_states: Any) -> None:
            batch, heads, _, _ = key_states.shape
            self.device = key_states.device
            self.key_buffer = key_states.new_empty((batch, heads, self.capacity, key_states.shape[-1]))
            self.value_buffer = value_states.new_empty((batch, heads, self.capacity, value_states.shape[-1]))
            self.is_initialized = True

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            end = self.length + key_states.shape[-2]
            if end > self.capacity:  # more than planned (should not happen): grow once, by doubling
                self.capacity = max(end, 2 * self.capacity)
                keys, values = self.key_buffer[:, :, : self.length], self.value_buffer[:, :, : self.length]
                self.lazy_initialization(key_states, value_states)
                self.key_buffer[:, :, : self.length], self.value_buffer[:, :, : self.length] = keys, values
            self.key_buffer[:, :, self.length : end] = key_states
            self.value_buffer[:, :, self.length : end] = value_states
            self.length = end
            self.keys, self.values = self.key_buffer[:, :, :end], self.value_buffer[:, :, :end]
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return self.length if self.is_initialized else 0

        def truncate(self, length: int) -> None:
            """Forget every position from ``length`` on (the buffers keep their memory)."""
            self.length = length
            self.keys, self.values = self.key_buffer[:, :, :length], self.value_buffer[:, :, :length]

        def rows(self, start: int, stop: int) -> Any:
            """A layer over rows ``start:stop`` of this one's buffers (its updates write into them)."""
            part = type(self)(self.capacity)
            part.device, part.is_initialized = self.device, True
            part.key_buffer, part.value_buffer = self.key_buffer[start:stop], self.value_buffer[start:stop]
            part.truncate(self.length)
            return part

        def _unsupported(self, *args: Any, **kwargs: Any) -> None:
            raise NotImplementedError("the prefix cache supports greedy and sampled decoding only")

        crop = batch_repeat_interleave = batch_select_indices = reorder_cache = _unsupported

    return BufferLayer


def prefix_cache(model: Any, prefix: Ids, batch: int, capacity: int, device: Any) -> Any:
    """A cache of ``batch`` rows, each holding the keys and values of ``prefix``, with room for
    ``capacity`` positions per row; the prefix goes through the model once, on one row.

    Parameters
    ----------
    prefix : token ids shared by every row (may be empty: then the cache starts empty)
    batch : rows; capacity : positions per row (prefix + rest of the prompt + new tokens)
    device : the model's device

    Returns
    -------
    transformers ``Cache`` with one buffered layer per decoder layer.
    """
    import torch
    from transformers.cache_utils import Cache, DynamicCache

    n_layers = model.config.get_text_config(decoder=True).num_hidden_layers
    layer_class = _buffer_layer_class()
    layers = [layer_class(capacity) for _ in range(n_layers)]
    if prefix:
        one = DynamicCache()
        ids = torch.tensor([prefix], dtype=torch.long, device=device)
        keep = {"logits_to_keep": 1} if _takes_logits_to_keep(model) else {}  # its logits are not used
        with torch.inference_mode():
            model(input_ids=ids, use_cache=True, **{cache_kwarg(model): one}, **keep)
        for layer, done in zip(layers, one.layers, strict=True):
            layer.update(done.keys.expand(batch, -1, -1, -1), done.values.expand(batch, -1, -1, -1))
    return Cache(layers=layers)


def left_layout(rows: list[Ids], prefix_len: int, pad_id: int) -> tuple[Any, Any]:
    """``(input_ids, attention_mask)``, both ``(B, P + W)`` long tensors: each row's first
    ``prefix_len`` tokens, then its rest left-padded to the longest rest ``W``."""
    import torch

    rests = [r[prefix_len:] for r in rows]
    width = prefix_len + max(len(r) for r in rests)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    ids[:, :prefix_len] = torch.tensor(rows[0][:prefix_len], dtype=torch.long)
    mask[:, :prefix_len] = 1
    for row, rest in enumerate(rests):
        ids[row, width - len(rest) :] = torch.tensor(rest, dtype=torch.long)
        mask[row, width - len(rest) :] = 1
    return ids, mask


def generate_rows(model: Any, rows: list[Ids], device: Any, max_new_tokens: int,
                  completions: list[Ids] | None = None, max_logits: int = 2**28, **generate_kwargs: Any
                  ) -> tuple[Any, list[tuple[float, int]] | None]:
    """``model.generate`` on one batch of tokenized prompts through the prefix cache, and
    optionally the teacher-forced loss of given completions from the same prompt cache.

    Parameters
    ----------
    rows : token ids of each prompt (B of them, unpadded)
    device : the model's device
    completions : token ids scored after each prompt (the gold solutions of the loss proxy),
        or None; scored after generation on the prompt's cached keys and values
    max_logits : most logits (elements) per scoring pass
    generate_kwargs : decoding settings passed on (greedy or sampling, pad and EOS ids)

    Returns
    -------
    (new tokens, scores): a ``(B, T)`` tensor (T <= max_new_tokens; rows that ended early are
    padded) and, with ``completions``, each row's summed NLL (nats) and scored-token count.
    """
    import torch

    pad_id = generate_kwargs["pad_token_id"]
    prefix_len = shared_prefix_length(rows, min(len(r) for r in rows) - 1)
    ids, mask = left_layout(rows, prefix_len, pad_id)
    longest = max((len(c) for c in completions), default=0) if completions is not None else 0
    cache = prefix_cache(model, rows[0][:prefix_len], len(rows), ids.shape[1] + max(max_new_tokens, longest), device)
    with torch.inference_mode():
        out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=True,
                             max_new_tokens=max_new_tokens, **{cache_kwarg(model): cache}, **generate_kwargs)
    scores = None
    if completions is not None:
        scores = score_continuations(model, cache, rows, completions, mask, device, pad_id, max_logits)
    return out[:, ids.shape[1] :], scores


def score_continuations(model: Any, cache: Any, rows: list[Ids], completions: list[Ids], mask: Any, device: Any,
                        pad_id: int, max_logits: int) -> list[tuple[float, int]]:
    """Summed NLL (nats, float64) and count of each completion after its prompt, from the cache.

    The cache holds the batch's prompts in the left layout (``mask``, ``(B, W)``, every
    prompt's last token in column ``W - 1``) and whatever was generated after them. It is
    cut back to ``W - 1`` positions; each row then feeds its last prompt token and its
    completion but the last token, at their plain-path positions, so the logits of that
    pass score every completion token. Rows are taken in chunks of at most ``max_logits``
    logits.
    """
    import torch
    import torch.nn.functional as F
    from transformers.cache_utils import Cache

    width, longest = mask.shape[1], max(max(len(c) for c in completions), 1)
    feed = torch.full((len(rows), longest), pad_id, dtype=torch.long)
    target = torch.zeros((len(rows), longest), dtype=torch.long)
    scored = torch.zeros((len(rows), longest), dtype=torch.bool)
    for row, (prompt, done) in enumerate(zip(rows, completions, strict=True)):
        feed[row, : max(len(done), 1)] = torch.tensor([prompt[-1], *done[:-1]], dtype=torch.long)
        target[row, : len(done)] = torch.tensor(done, dtype=torch.long)
        scored[row, : len(done)] = True
    fed = scored.clone()
    fed[:, 0] = True
    positions = torch.tensor([len(r) - 1 for r in rows])[:, None] + torch.arange(longest)[None, :]
    attention = torch.cat([mask[:, : width - 1], fed.long()], dim=1)
    for layer in cache.layers:
        layer.truncate(width - 1)
    vocab = model.get_output_embeddings().weight.shape[0]
    per = max(1, max_logits // (longest * vocab))
    out: list[tuple[float, int]] = []
    for start in range(0, len(rows), per):
        stop = min(start + per, len(rows))
        part = Cache(layers=[layer.rows(start, stop) for layer in cache.layers])
        with torch.inference_mode():
            logits = model(input_ids=feed[start:stop].to(device), attention_mask=attention[start:stop].to(device),
                           position_ids=positions[start:stop].to(device), use_cache=True,
                           **{cache_kwarg(model): part}).logits
            keep = scored[start:stop].to(device)
            nll = F.cross_entropy(logits[keep].float(), target[start:stop].to(device)[keep], reduction="none")
            sums = torch.zeros(stop - start, dtype=torch.float64, device=device).index_add_(
                0, keep.nonzero()[:, 0], nll.double())
        out.extend((float(sums[i]), int(keep[i].sum())) for i in range(stop - start))
    return out


def forward_rows(model: Any, chunk: list[tuple[Ids, int]], device: Any, pad_id: int, first: int) -> tuple[Any, int]:
    """Teacher-forced logits of one loss group through the prefix cache.

    Parameters
    ----------
    chunk : (token ids, completion start) of each sequence
    device : the model's device
    pad_id : fills the right padding
    first : earliest position whose logits score a token (the prefix stops before it)

    Returns
    -------
    (logits, width): ``(B, width - first, V)`` logits, column j at position ``first + j``, and
    the padded width of the group (positions ``0 .. width - 1``).
    """
    import torch

    seqs = [ids for ids, _ in chunk]
    prefix_len = shared_prefix_length(seqs, first)
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width - prefix_len), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    mask[:, :prefix_len] = 1
    for row, seq in enumerate(seqs):  # right padding after the prefix: natural positions
        ids[row, : len(seq) - prefix_len] = torch.tensor(seq[prefix_len:], dtype=torch.long)
        mask[row, prefix_len : len(seq)] = 1
    cache = prefix_cache(model, seqs[0][:prefix_len], len(seqs), width, device)
    kwargs = {"logits_to_keep": width - first} if _takes_logits_to_keep(model) else {}
    with torch.inference_mode():
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=True,
                       **{cache_kwarg(model): cache}, **kwargs).logits
    return logits[:, -(width - first) :], width


def _takes_logits_to_keep(model: Any) -> bool:
    return "logits_to_keep" in inspect.signature(model.forward).parameters
