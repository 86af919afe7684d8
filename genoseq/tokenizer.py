"""The single-nucleotide tokenizer: one token per base.

Ids are fixed so that every model and every token store agree:

====  =========  =========================================
id    token      meaning
====  =========  =========================================
0     ``[PAD]``  padding
1     ``[BOS]``  beginning of sequence / classification
2     ``[EOS]``  end of sequence / separator
3     ``[MASK]`` masked position
4     ``[UNK]``  unknown symbol (only with ``on_invalid="unk"``)
5-8   A C G T
9     N          any IUPAC ambiguity code (R Y S W K M B D H V N)
10+   condition  ``[COND:label]`` tokens added by conditional models
====  =========  =========================================

Encoding and decoding go through 256-entry byte lookup tables, so a whole bacterial genome
is tokenised in a few milliseconds. Lower-case (soft-masked) bases are accepted. The reverse
complement works on token ids through a complement map, so strand augmentation never
round-trips through strings.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Literal, Sequence

import numpy as np

from genoseq.errors import InputError
from genoseq.runtime import write_json

if TYPE_CHECKING:  # pragma: no cover
    import torch

PAD, BOS, EOS, MASK, UNK = 0, 1, 2, 3, 4
A, C, G, T, N = 5, 6, 7, 8, 9
SPECIAL_TOKENS = ("[PAD]", "[BOS]", "[EOS]", "[MASK]", "[UNK]")
BASES = ("A", "C", "G", "T", "N")
NUM_BASE_TOKENS = len(SPECIAL_TOKENS) + len(BASES)  # first id free for condition tokens
IUPAC_AMBIGUOUS = "RYSWKMBDHVN"
TOKENIZER_FILE = "tokenizer.json"


def _encode_table() -> np.ndarray:
    table = np.full(256, -1, dtype=np.int16)
    for code in IUPAC_AMBIGUOUS:
        table[ord(code)] = table[ord(code.lower())] = N
    for i, base in enumerate("ACGT"):
        table[ord(base)] = table[ord(base.lower())] = A + i
    return table


_ENCODE = _encode_table()


class Tokenizer:
    """Single-nucleotide tokenizer with optional condition tokens.

    >>> tok = Tokenizer()
    >>> tok.encode("ACgtN").tolist()
    [5, 6, 7, 8, 9]
    >>> tok.decode(tok.reverse_complement(tok.encode("AACG")))
    'CGTT'
    """

    def __init__(self, condition_labels: Iterable[str] = ()) -> None:
        self.condition_labels: list[str] = []
        self.add_condition_tokens(condition_labels)

    # ------------------------------------------------------------------ vocabulary
    @property
    def vocab_size(self) -> int:
        return NUM_BASE_TOKENS + len(self.condition_labels)

    @property
    def tokens(self) -> list[str]:
        """All tokens in id order."""
        return [*SPECIAL_TOKENS, *BASES, *(f"[COND:{label}]" for label in self.condition_labels)]

    def add_condition_tokens(self, labels: Iterable[str]) -> list[int]:
        """Add one condition token per new label; return the ids of all given labels.

        Existing ids never change, so a pretrained model's embeddings stay valid.
        """
        ids = []
        for label in labels:
            label = str(label)
            if not label:
                raise ValueError("condition label must be a non-empty string")
            if label not in self.condition_labels:
                self.condition_labels.append(label)
            ids.append(self.condition_id(label))
        return ids

    def condition_id(self, label: str) -> int:
        try:
            return NUM_BASE_TOKENS + self.condition_labels.index(str(label))
        except ValueError:
            known = ", ".join(self.condition_labels) or "none"
            raise KeyError(f"unknown condition label {label!r} (known: {known})") from None

    def _complement_table(self) -> np.ndarray:
        table = np.arange(self.vocab_size, dtype=np.int64)
        table[[A, C, G, T]] = [T, G, C, A]
        return table

    def _decode_table(self) -> np.ndarray:
        table = np.zeros(self.vocab_size, dtype=np.uint8)
        table[A : N + 1] = np.frombuffer(b"ACGTN", dtype=np.uint8)
        return table

    # ------------------------------------------------------------------ encode / decode
    def encode(
        self,
        seq: str | bytes | np.ndarray,
        *,
        add_bos: bool = False,
        add_eos: bool = False,
        on_invalid: Literal["raise", "unk"] = "raise",
        name: str | None = None,
        path: str | os.PathLike | None = None,
        offset: int = 0,
    ) -> np.ndarray:
        """Encode one sequence to a ``uint8`` array of ids.

        ``name``, ``path`` and ``offset`` only make error messages precise: an invalid character
        raises :class:`InputError` naming the record, the file and the 1-based position
        (``offset`` + index + 1).
        """
        if isinstance(seq, str):
            try:
                raw = np.frombuffer(seq.encode("ascii"), dtype=np.uint8)
            except UnicodeEncodeError as err:
                raise InputError(
                    f"invalid character {seq[err.start]!r} in sequence",
                    path=path, record=name, position=offset + err.start + 1,
                ) from None
        elif isinstance(seq, (bytes, bytearray, memoryview)):
            raw = np.frombuffer(seq, dtype=np.uint8)
        else:
            raw = np.asarray(seq, dtype=np.uint8)
        ids = _ENCODE[raw]
        bad = np.flatnonzero(ids < 0)
        if bad.size:
            if on_invalid == "unk":
                ids[bad] = UNK
            else:
                i = int(bad[0])
                raise InputError(
                    f"invalid character {chr(raw[i])!r} in sequence ({bad.size} invalid in all); "
                    f"allowed: A C G T, IUPAC codes {IUPAC_AMBIGUOUS} (as N), any case",
                    path=path, record=name, position=offset + i + 1,
                )
        ids = ids.astype(np.uint8)
        if add_bos or add_eos:
            parts = ([np.array([BOS], np.uint8)] if add_bos else []) + [ids]
            parts += [np.array([EOS], np.uint8)] if add_eos else []
            ids = np.concatenate(parts)
        return ids

    def decode(self, ids: "np.ndarray | torch.Tensor | Sequence[int]", *, skip_special: bool = True) -> str:
        """Decode ids to bases. Special and condition tokens are dropped (or shown by name)."""
        ids = _to_numpy(ids).astype(np.int64, copy=False).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise ValueError(f"token id out of range 0..{self.vocab_size - 1}")
        is_base = (ids >= A) & (ids <= N)
        if skip_special:
            return self._decode_table()[ids[is_base]].tobytes().decode("ascii")
        tokens = self.tokens
        return "".join(tokens[i] for i in ids.tolist())

    def reverse_complement(self, ids):
        """Reverse complement along the last axis of a numpy array or torch tensor of ids.

        For a padded batch, take the reverse complement before padding (padding would move).
        """
        table = self._complement_table()
        if isinstance(ids, np.ndarray):
            return table[ids][..., ::-1].astype(ids.dtype)
        import torch

        if isinstance(ids, torch.Tensor):
            return torch.as_tensor(table, device=ids.device)[ids.long()].flip(-1).to(ids.dtype)
        return table[np.asarray(ids)][..., ::-1]

    def encode_batch(
        self,
        seqs: Sequence[str | bytes | np.ndarray],
        *,
        padding: Literal["longest", "max_length"] = "longest",
        max_length: int | None = None,
        side: Literal["right", "left"] = "right",
        truncation: bool = False,
        add_bos: bool = False,
        add_eos: bool = False,
        return_tensors: Literal["pt", "np"] = "pt",
    ) -> dict:
        """Encode and pad a batch: ``{"input_ids": (B, L) int64, "attention_mask": (B, L) bool}``.

        Strings are encoded; arrays are taken as ids already. ``padding="max_length"`` pads to
        ``max_length``; a longer sequence is an error unless ``truncation`` is set, which keeps
        the first ``max_length`` tokens (``side="left"`` keeps the last ones).
        """
        if not len(seqs):
            raise ValueError("encode_batch needs at least one sequence")
        encoded = [
            s.astype(np.int64) if isinstance(s, np.ndarray)
            else self.encode(s, add_bos=add_bos, add_eos=add_eos, name=f"#{i}").astype(np.int64)
            for i, s in enumerate(seqs)
        ]
        longest = max(len(e) for e in encoded)
        if padding == "max_length":
            if max_length is None:
                raise ValueError("padding='max_length' needs max_length")
            target = max_length
        else:
            target = min(longest, max_length) if (max_length and truncation) else longest
        ids = np.full((len(encoded), target), PAD, dtype=np.int64)
        mask = np.zeros((len(encoded), target), dtype=bool)
        for row, e in enumerate(encoded):
            if len(e) > target:
                if not truncation:
                    raise InputError(f"sequence of {len(e)} tokens exceeds max_length={target}", record=f"#{row}")
                e = e[:target] if side == "right" else e[-target:]
            if side == "right":
                ids[row, : len(e)], mask[row, : len(e)] = e, True
            else:
                ids[row, target - len(e) :], mask[row, target - len(e) :] = e, True
        if return_tensors == "np":
            return {"input_ids": ids, "attention_mask": mask}
        import torch

        return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}

    def is_base(self, ids):
        """Mask of nucleotide tokens (A C G T N): the positions a language-model loss counts."""
        return (ids >= A) & (ids <= N)

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict:
        return {
            "type": "genoseq.Tokenizer",
            "format_version": 1,
            "tokens": self.tokens,
            "condition_labels": list(self.condition_labels),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Tokenizer":
        if data.get("type") != "genoseq.Tokenizer":
            raise ValueError(f"not a genoseq tokenizer config: type={data.get('type')!r}")
        tok = cls(data.get("condition_labels", []))
        if data.get("tokens") is not None and data["tokens"] != tok.tokens:
            raise ValueError("tokenizer file lists tokens that differ from this genoseq version's ids")
        return tok

    def save(self, path: str | os.PathLike) -> Path:
        """Write the tokenizer as JSON; a directory gets ``tokenizer.json`` inside it."""
        path = Path(path)
        if path.is_dir():
            path = path / TOKENIZER_FILE
        write_json(path, self.to_dict())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Tokenizer":
        path = Path(path)
        if path.is_dir():
            path = path / TOKENIZER_FILE
        return cls.from_dict(json.loads(path.read_text()))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tokenizer) and other.condition_labels == self.condition_labels

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, condition_labels={self.condition_labels})"


def _to_numpy(ids) -> np.ndarray:
    if isinstance(ids, np.ndarray):
        return ids
    try:
        import torch

        if isinstance(ids, torch.Tensor):
            return ids.detach().cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    return np.asarray(ids)
