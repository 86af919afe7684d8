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
``phase``  three means, over positions 0, 3, 6, ... / 1, 4, 7, ... / 2, 5, 8, ...: the codon
           phases of a sequence that starts in frame (3 x d_model)
``ends``   the means of the first and of the last ``ENDS_WIDTH`` (16) tokens: what sits next
           to the anchor of an anchored window, e.g. the ribosome binding site before a start
           codon (2 x d_model)
=========  ==================================================================================

``mean``, ``last``, ``phase`` and ``ends`` combine with ``+`` (``phase+ends``: the vectors
concatenated in that order); ``echo`` stands alone. :func:`pooled_dim` gives the width.

``layer`` follows :meth:`GenoSeqLM.hidden_states`: ``None`` is the final normed output (what
the LM head sees); an int ``k`` in ``0..n_layers`` is the residual stream after ``k`` blocks
(0 = the embeddings) and negative values count from the top (-1 = after the last block,
before the final norm).

``rc_average=True`` averages the vectors of the sequence and of its reverse complement, so a
sequence and its reverse complement get the same embedding (up to float rounding).
``rc_concat=True`` concatenates them instead (twice the width): a causal model reads the
reverse complement from the other end, so its states at the start of the sequence have seen
the rest of it, which the forward states there have not.

:func:`pooled_embeddings` is differentiable (the fine-tuned classifier trains through it);
:class:`Embedder` wraps it for inference over many sequences: batching by length, no
gradients, the device policy of :mod:`genoseq.runtime`.
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
import torch

from genoseq.errors import InputError
from genoseq.tokenizer import PAD, Tokenizer

from .lm import GenoSeqLM, reverse_complement_batch

Pooling = str  # "mean", "last", "echo", "phase", "ends" or a "+" combination (see the module docstring)
POOLINGS: tuple[str, ...] = ("mean", "last", "echo", "phase", "ends")
ENDS_WIDTH = 16  # tokens pooled at each end by "ends"
_VECTORS = {"mean": 1, "last": 1, "echo": 1, "phase": 3, "ends": 2}  # d_model-wide vectors per component


def pooling_parts(pooling: str) -> tuple[str, ...]:
    """The components of a pooling spec (``"phase+ends"`` -> ``("phase", "ends")``); InputError (a
    ValueError) if invalid, so the CLI reports it as bad input."""
    parts = tuple(str(pooling).split("+"))
    if not all(p in POOLINGS for p in parts) or len(set(parts)) != len(parts) or ("echo" in parts and len(parts) > 1):
        raise InputError(f"pooling must be one of {', '.join(POOLINGS)}, or a '+' combination of mean, last, phase "
                         f"and ends (echo stands alone); got {pooling!r}")
    return parts


def check_strands(rc_average: bool, rc_concat: bool) -> None:
    """InputError (a ValueError) when both strand options are set: the strands are averaged or concatenated."""
    if rc_average and rc_concat:
        raise InputError("rc_average and rc_concat exclude each other: average the strands or concatenate them")


def pooled_dim(d_model: int, pooling: str, rc_concat: bool = False) -> int:
    """Width of the pooled vector for a model of width ``d_model``."""
    return d_model * sum(_VECTORS[p] for p in pooling_parts(pooling)) * (2 if rc_concat else 1)


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


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Pool hidden states (B, L, D) over the positions where ``mask`` (B, L) is true -> (B, k*D).

    ``pooling`` is ``mean``, ``last``, ``phase``, ``ends`` or a ``+`` combination of them (see
    the module docstring); positions count from the first true one of each row.
    """
    mask = mask.to(hidden.device)
    rank = mask.long().cumsum(1) - 1  # position within the pooled span
    count = mask.long().sum(1, keepdim=True)

    def masked_mean(where: torch.Tensor) -> torch.Tensor:
        weights = (where & mask).to(hidden.dtype)[..., None]
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)

    vectors = []
    for part in pooling_parts(pooling):
        if part == "mean":
            vectors.append(masked_mean(mask))
        elif part == "last":
            index = (mask & (rank == count - 1)).long().argmax(1)
            vectors.append(hidden[torch.arange(hidden.shape[0], device=hidden.device), index])
        elif part == "phase":
            vectors += [masked_mean(rank % 3 == p) for p in range(3)]
        elif part == "ends":
            vectors += [masked_mean(rank < ENDS_WIDTH), masked_mean(rank >= count - ENDS_WIDTH)]
        else:
            raise ValueError(f"pool() does not take {part!r} (echo is applied by pooled_embeddings)")
    return vectors[0] if len(vectors) == 1 else torch.cat(vectors, dim=-1)


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
    rc_concat: bool = False,
) -> torch.Tensor:
    """One vector per row of a right-padded batch: (B, L) ids -> (B, :func:`pooled_dim`) float.

    Differentiable: gradients flow into ``model`` (fine-tuning uses this). Padding must be on
    the right (``Tokenizer.encode_batch``'s default); a causal model then never sees it at the
    positions that are pooled.
    """
    pooling_parts(pooling)
    check_strands(rc_average, rc_concat)
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
    if rc_average or rc_concat:
        flip = torch.ones(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        rc = reverse_complement_batch({"input_ids": input_ids, "attention_mask": attention_mask}, model.tokenizer, flip)
        rc_vectors = _pooled_one_strand(model, rc["input_ids"], lengths, layer, pooling)
        vectors = torch.cat([vectors, rc_vectors], dim=-1) if rc_concat else 0.5 * (vectors + rc_vectors)
    return vectors


class Embedder:
    """Embed many sequences with a language model: ``Embedder(model).embed(["ACGT...", ...])``.

    Args:
        model: A :class:`GenoSeqLM` or the directory of a released one.
        layer: Hidden layer (see the module docstring): ``None`` final normed output, ``k``
            after ``k`` blocks, negative from the top (-1 = after the last block).
        pooling: ``mean``, ``last`` or ``echo``.
        rc_average: Average each sequence's vector with its reverse complement's.
        rc_concat: Concatenate each sequence's vector with its reverse complement's.
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
        rc_concat: bool = False,
        batch_size: int = 32,
        max_length: int | None = None,
        device: str | None = "auto",
    ) -> None:
        from genoseq.runtime import resolve_device

        pooling_parts(pooling)
        check_strands(rc_average, rc_concat)
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.device = resolve_device(device)
        if not isinstance(model, GenoSeqLM):
            model = GenoSeqLM.from_pretrained(model)
        self.model = model.to(self.device).eval()
        n = model.config.n_layers
        if layer is not None and not -(n + 1) <= layer <= n:
            from genoseq.errors import InputError

            raise InputError(f"layer: {layer} is out of range for a {n}-layer model (use {-(n + 1)}..{n}, "
                             "or None for the final normed output)", field="layer", kind="out_of_range")
        self.layer, self.pooling, self.rc_average, self.rc_concat = layer, pooling, rc_average, rc_concat
        self.batch_size, self.max_length = batch_size, max_length
        self.tokenizer: Tokenizer = model.tokenizer

    @property
    def dim(self) -> int:
        return pooled_dim(self.model.config.d_model, self.pooling, self.rc_concat)

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
    def embed(self, sequences: Sequence[str | np.ndarray], progress: bool | str = False) -> np.ndarray:
        """Embeddings (N, :attr:`dim`) float32, in the order of ``sequences``.

        ``progress``: ``bar``, ``lines``, ``none`` or ``auto`` (see :mod:`genoseq.progress`).
        """
        from genoseq.progress import Progress
        from genoseq.runtime import inference_dtype

        encoded = self.encode(sequences)
        out = np.zeros((len(encoded), self.dim), dtype=np.float32)
        if not encoded:
            return out
        order = np.argsort([-len(e) for e in encoded], kind="stable")  # little padding per batch
        dtype = inference_dtype(self.device)
        with Progress(len(order), desc="embed", unit="seq", mode=progress) as bar:  # closed however it ends
            for b in range(0, len(order), self.batch_size):
                rows = order[b : b + self.batch_size]
                batch = self.tokenizer.encode_batch([encoded[i] for i in rows])
                ids = batch["input_ids"].to(self.device)
                mask = batch["attention_mask"].to(self.device)
                with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
                    vectors = pooled_embeddings(
                        self.model, ids, mask, layer=self.layer, pooling=self.pooling, rc_average=self.rc_average,
                        rc_concat=self.rc_concat,
                    )
                out[rows] = vectors.float().cpu().numpy()
                bar.update(len(rows))
        return out


__all__ = ["ENDS_WIDTH", "POOLINGS", "Embedder", "check_strands", "echo_batch", "pool", "pooled_dim", "pooled_embeddings", "pooling_parts"]
