"""Sequence embeddings from a :class:`~genoseq.models.GenoSeqLM`: layer choice, pooling, echo, strands.

A causal language model's hidden state at position t has seen only x_0..x_t, so how per-token
states are pooled into one vector per sequence matters:

=========  ==================================================================================
pooling    vector
=========  ==================================================================================
``mean``   mean of the hidden states over the sequence's tokens (padding excluded)
``last``   the hidden state of the last token: the only one that has seen the whole sequence
``echo``   the sequence is fed twice, ``x x``, and the second copy is mean-pooled: every
           position of the second copy has seen the whole sequence once (HybriDNA's "echo
           embedding" for causal models)
=========  ==================================================================================

``layer`` follows :meth:`GenoSeqLM.hidden_states`: ``None`` is the final normed output (what
the LM head sees); an int ``k`` in ``0..n_layers`` is the residual stream after ``k`` blocks
(0 = the embeddings) and negative values count from the top (-1 = after the last block,
before the final norm).

``rc_average=True`` averages the vectors of the sequence and of its reverse complement, so a
sequence and its reverse complement get the same embedding (up to float rounding).

:func:`pooled_embeddings` is differentiable (the fine-tuned classifier trains through it);
:class:`Embedder` wraps it for inference over many sequences: batching by length, no
gradients, the device policy of :mod:`genoseq.runtime`.
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
import torch

from genoseq.tokenizer import PAD, Tokenizer

from .lm import GenoSeqLM, reverse_complement_batch

Pooling = Literal["mean", "last", "echo"]
POOLINGS: tuple[str, ...] = ("mean", "last", "echo")


def _check_pooling(pooling: str) -> None:
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}; got {pooling!r}")


def echo_batch(input_ids: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's valid tokens repeated twice, right-padded: ids (B, 2L) and the mask of the second copy.

    Row ``i`` with ``n = lengths[i]`` valid tokens becomes ``x[:n] x[:n] PAD...``; the mask is
    true on positions ``n .. 2n-1``.
    """
    B, L = input_ids.shape
    pos = torch.arange(2 * L, device=input_ids.device).expand(B, 2 * L)
    n = lengths[:, None]
    source = torch.where(pos < n, pos, pos - n).clamp(max=L - 1)
    echoed = input_ids.gather(1, source)
    echoed = torch.where(pos < 2 * n, echoed, torch.full_like(echoed, PAD))
    second = (pos >= n) & (pos < 2 * n)
    return echoed, second


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: Literal["mean", "last"]) -> torch.Tensor:
    """Pool hidden states (B, L, D) over the positions where ``mask`` (B, L) is true -> (B, D).

    ``"mean"`` averages them; ``"last"`` takes the last true position of each row.
    """
    mask = mask.to(hidden.device)
    if pooling == "mean":
        weights = mask.to(hidden.dtype)[..., None]
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
    if pooling == "last":
        last = (mask.long().cumsum(1) == mask.long().sum(1, keepdim=True)) & mask
        index = last.long().argmax(1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), index]
    raise ValueError(f"pool() takes 'mean' or 'last', not {pooling!r}")


def _pooled_one_strand(
    model: GenoSeqLM, input_ids: torch.Tensor, lengths: torch.Tensor, layer: int | None, pooling: str
) -> torch.Tensor:
    pos = torch.arange(input_ids.shape[1], device=input_ids.device)
    mask = pos[None, :] < lengths[:, None]
    if pooling == "echo":
        ids, second = echo_batch(input_ids, lengths)
        hidden = model.hidden_states(ids, layer=layer)
        return pool(hidden, second, "mean")
    hidden = model.hidden_states(input_ids, layer=layer)
    return pool(hidden, mask, pooling)


def pooled_embeddings(
    model: GenoSeqLM,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    *,
    layer: int | None = -1,
    pooling: Pooling = "mean",
    rc_average: bool = False,
) -> torch.Tensor:
    """One vector per row of a right-padded batch: (B, L) ids -> (B, d_model) float.

    Differentiable: gradients flow into ``model`` (fine-tuning uses this). Padding must be on
    the right (``Tokenizer.encode_batch``'s default); a causal model then never sees it at the
    positions that are pooled.
    """
    _check_pooling(pooling)
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be (batch, length), got shape {tuple(input_ids.shape)}")
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids, dtype=torch.bool)
    attention_mask = attention_mask.bool()
    lengths = attention_mask.long().sum(1)
    if bool((lengths == 0).any()):
        raise ValueError("every sequence needs at least one token")
    expected = torch.arange(input_ids.shape[1], device=input_ids.device)[None, :] < lengths[:, None]
    if not torch.equal(expected, attention_mask):
        raise ValueError("pooled_embeddings needs right padding (attention_mask true on a prefix of each row)")
    vectors = _pooled_one_strand(model, input_ids, lengths, layer, pooling)
    if rc_average:
        flip = torch.ones(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        rc = reverse_complement_batch({"input_ids": input_ids, "attention_mask": attention_mask}, model.tokenizer, flip)
        vectors = 0.5 * (vectors + _pooled_one_strand(model, rc["input_ids"], lengths, layer, pooling))
    return vectors


class Embedder:
    """Embed many sequences with a language model: ``Embedder(model).embed(["ACGT...", ...])``.

    Args:
        model: A :class:`GenoSeqLM` or the directory of a released one.
        layer: Hidden layer (see the module docstring): ``None`` final normed output, ``k``
            after ``k`` blocks, negative from the top (-1 = after the last block).
        pooling: ``mean``, ``last`` or ``echo``.
        rc_average: Average each sequence's vector with its reverse complement's.
        batch_size: Sequences per forward pass (sequences are grouped by length).
        max_length: Truncate longer sequences to their first ``max_length`` bases (None: never).
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda:1``, ...
    """

    def __init__(
        self,
        model: GenoSeqLM | str,
        *,
        layer: int | None = -1,
        pooling: Pooling = "mean",
        rc_average: bool = False,
        batch_size: int = 32,
        max_length: int | None = None,
        device: str | None = "auto",
    ) -> None:
        from genoseq.runtime import resolve_device

        _check_pooling(pooling)
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.device = resolve_device(device)
        if not isinstance(model, GenoSeqLM):
            model = GenoSeqLM.from_pretrained(model)
        self.model = model.to(self.device).eval()
        n = model.config.n_layers
        if layer is not None and not -(n + 1) <= layer <= n:
            raise ValueError(f"layer {layer} out of range for a {n}-layer model (use 0..{n}, negative, or None)")
        self.layer, self.pooling, self.rc_average = layer, pooling, rc_average
        self.batch_size, self.max_length = batch_size, max_length
        self.tokenizer: Tokenizer = model.tokenizer

    @property
    def dim(self) -> int:
        return self.model.config.d_model

    def encode(self, sequences: Sequence[str | np.ndarray]) -> list[np.ndarray]:
        """Token ids of each sequence (strings are encoded; arrays are taken as ids), truncated."""
        out = []
        for i, seq in enumerate(sequences):
            ids = seq if isinstance(seq, np.ndarray) else self.tokenizer.encode(seq, name=f"#{i + 1}")
            if len(ids) == 0:
                raise ValueError(f"sequence #{i + 1} is empty")
            out.append(ids[: self.max_length] if self.max_length else ids)
        return out

    @torch.inference_mode()
    def embed(self, sequences: Sequence[str | np.ndarray], progress: bool = False) -> np.ndarray:
        """Embeddings (N, d_model) float32, in the order of ``sequences``."""
        from genoseq.runtime import inference_dtype

        encoded = self.encode(sequences)
        out = np.zeros((len(encoded), self.dim), dtype=np.float32)
        if not encoded:
            return out
        order = np.argsort([-len(e) for e in encoded], kind="stable")  # little padding per batch
        dtype = inference_dtype(self.device)
        batches = range(0, len(order), self.batch_size)
        if progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc="embedding", unit="batch")
        for b in batches:
            rows = order[b : b + self.batch_size]
            batch = self.tokenizer.encode_batch([encoded[i] for i in rows])
            ids = batch["input_ids"].to(self.device)
            mask = batch["attention_mask"].to(self.device)
            with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
                vectors = pooled_embeddings(
                    self.model, ids, mask, layer=self.layer, pooling=self.pooling, rc_average=self.rc_average
                )
            out[rows] = vectors.float().cpu().numpy()
        return out


__all__ = ["POOLINGS", "Embedder", "echo_batch", "pool", "pooled_embeddings"]
