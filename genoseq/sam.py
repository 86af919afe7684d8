"""Small SAM helpers: CIGAR strings and tuples, soft clips, the edit distance of an alignment.

pysam encodes CIGAR operations as integers (``M`` 0, ``I`` 1, ``D`` 2, ``N`` 3, ``S`` 4,
``H`` 5, ``P`` 6, ``=`` 7, ``X`` 8); these helpers convert between that and strings such as
the extended CIGAR that edlib returns (``=``, ``X``, ``I``, ``D``). No pysam import here.
"""

from __future__ import annotations

import re

CIGAR_OPS = "MIDNSHP=X"
OP_CODE = {op: i for i, op in enumerate(CIGAR_OPS)}
M, I, D, S, EQ, X = OP_CODE["M"], OP_CODE["I"], OP_CODE["D"], OP_CODE["S"], OP_CODE["="], OP_CODE["X"]
_CIGAR_RE = re.compile(r"(\d+)([MIDNSHP=X])")
_CONSUMES_REF = {M, D, OP_CODE["N"], EQ, X}
_CONSUMES_QUERY = {M, I, S, EQ, X}


def parse_cigar(cigar: str) -> list[tuple[int, int]]:
    """``"5=1X3I"`` -> ``[(7, 5), (8, 1), (1, 3)]`` (pysam's (op, length) tuples)."""
    tuples = [(OP_CODE[op], int(n)) for n, op in _CIGAR_RE.findall(cigar)]
    if "".join(f"{n}{CIGAR_OPS[op]}" for op, n in tuples) != cigar:
        raise ValueError(f"malformed CIGAR {cigar!r}")
    return tuples


def cigar_string(tuples: list[tuple[int, int]]) -> str:
    return "".join(f"{n}{CIGAR_OPS[op]}" for op, n in tuples) or "*"


def merge_ops(tuples: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Join neighbouring operations of the same kind and drop empty ones."""
    out: list[tuple[int, int]] = []
    for op, n in tuples:
        if n <= 0:
            continue
        if out and out[-1][0] == op:
            out[-1] = (op, out[-1][1] + n)
        else:
            out.append((op, n))
    return out


def to_match_mismatch(tuples: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Collapse ``=`` and ``X`` into ``M`` (the classic CIGAR)."""
    return merge_ops([(M if op in (EQ, X) else op, n) for op, n in tuples])


def soft_clip_ends(tuples: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Turn insertions at either end into soft clips and drop deletions at either end.

    An aligner that must place the whole read (edlib's infix mode) reports read bases that hang
    over the end of the reference window as insertions; SAM writes them as ``S``, and a CIGAR
    may not start or end with ``D``.
    """
    ops = merge_ops(tuples)
    while ops and ops[0][0] == D:
        ops.pop(0)
    while ops and ops[-1][0] == D:
        ops.pop()
    if ops and ops[0][0] == I:
        ops[0] = (S, ops[0][1])
    if ops and ops[-1][0] == I:
        ops[-1] = (S, ops[-1][1])
    return merge_ops(ops)


def clip_and_extend(tuples: list[tuple[int, int]], query: bytes, ref: bytes, ref_start: int,
                    clip_penalty: int = 5, mismatch: int = 4, gap: int = 6) -> tuple[list[tuple[int, int]], int]:
    """Soft-clip poorly aligned read ends, then grow the clips back over exact matches.

    Scoring +1 per ``=``, ``-mismatch`` per ``X``, ``-gap`` per inserted or deleted base, an end
    (up to an operation boundary) is clipped when its score is below ``-clip_penalty``, as
    local aligners do. An edit-distance aligner can place overhanging bases in several
    equally cheap ways; after clipping, the clip boundary moves outwards while the next read
    base equals the next reference base, so the result does not depend on that choice.
    ``tuples`` must be an extended CIGAR (``=``/``X``) aligning ``query`` to ``ref`` from
    ``ref_start``. Returns the new CIGAR and reference start.
    """
    ops = merge_ops(tuples)
    left = ops.pop(0)[1] if ops and ops[0][0] == S else 0
    right = ops.pop()[1] if ops and ops[-1][0] == S else 0

    def worst_prefix(seq: list[tuple[int, int]]) -> int:
        score, best, cut = 0, 0, -1
        for i, (op, n) in enumerate(seq):
            score += n if op == EQ else -mismatch * n if op == X else -gap * n if op in (I, D) else 0
            if score < best:
                best, cut = score, i
        return cut if best < -clip_penalty else -1

    cut = worst_prefix(ops)
    if cut >= 0:
        left += query_length(ops[:cut + 1])
        ref_start += reference_length(ops[:cut + 1])
        ops = ops[cut + 1:]
    cut = worst_prefix(ops[::-1])
    if cut >= 0:
        right += query_length(ops[len(ops) - 1 - cut:])
        ops = ops[:len(ops) - 1 - cut]
    while left and ref_start > 0 and query[left - 1] == ref[ref_start - 1]:
        left, ref_start = left - 1, ref_start - 1
        ops.insert(0, (EQ, 1))
    ref_end = ref_start + reference_length(ops)
    while right and ref_end < len(ref) and query[len(query) - right] == ref[ref_end]:
        right, ref_end = right - 1, ref_end + 1
        ops.append((EQ, 1))
    return merge_ops([(S, left), *ops, (S, right)]), ref_start


def reference_length(tuples: list[tuple[int, int]]) -> int:
    return sum(n for op, n in tuples if op in _CONSUMES_REF)


def query_length(tuples: list[tuple[int, int]]) -> int:
    return sum(n for op, n in tuples if op in _CONSUMES_QUERY)


def leading_soft_clip(tuples: list[tuple[int, int]]) -> int:
    """Bases soft-clipped at the left end (hard clips skipped)."""
    clip = 0
    for op, n in tuples:
        if op == S:
            clip += n
        elif op != OP_CODE["H"]:
            break
    return clip


def edit_distance(tuples: list[tuple[int, int]]) -> int:
    """Mismatches + inserted + deleted bases of an extended (``=``/``X``) CIGAR: the NM tag."""
    return sum(n for op, n in tuples if op in (X, I, D))


__all__ = [
    "CIGAR_OPS", "OP_CODE", "cigar_string", "clip_and_extend", "edit_distance", "leading_soft_clip", "merge_ops",
    "parse_cigar", "query_length", "reference_length", "soft_clip_ends", "to_match_mismatch",
]
