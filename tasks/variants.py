"""Zero-shot variant effects from a DNA language model, on a genome held by any
:class:`~genoseq.genome.Genome` (a FASTA file, a token store, or sequences in memory).

The score of an ALT allele is a log-likelihood ratio (natural log)::

    LLR = log P(alt window) - log P(ref window)

where the ref window is ``window_length`` reference bases centred on the variant and the alt
window is the same window with REF replaced by ALT. Both windows share the same reference
flanks, so for an indel the alt window is longer or shorter by ``len(ALT) - len(REF)`` and the
two likelihoods cover the same stretch of the genome. A negative LLR means the model finds the
alternative sequence less likely: the more negative, the more damaging the variant is taken
to be.

Design decisions:

* **Window** 256 bp by default: long enough to fix the reading frame and the local gene
  context around a bacterial variant on both sides, short enough that scoring stays cheap.
  Near a contig end the window is shifted inward so that it keeps its full length where the
  contig allows (on a contig shorter than the window it is the whole contig).
* **Strands**: the model is causal, so a variant only changes the probabilities of the bases
  at and after it. Scoring both the window and its reverse complement gives each variant
  context from both sides; ``strands="both"`` (default) averages the two LLRs.
* **Only the changed part is summed**: for a causal model the tokens before the variant have
  identical probabilities in the ref and alt windows, so each window's log-likelihood is summed
  from the variant onward. This is exactly the full-window difference, with less rounding noise.
* **Cache by window**: each distinct window (a reference window shared by the ALTs of a
  multi-allelic record, repeated records) is scored once.

**Bidirectional (masked) models** such as Caduceus give no next-base probabilities; their score
is the **masked marginal** (Meier et al. 2021, ESM's zero-shot score; Caduceus' and the
Nucleotide Transformer's zero-shot VEP)::

    LLR = sum over changed positions k of [ log P(ALT_k | ref window, changed positions masked)
                                            - log P(REF_k | the same) ]

one forward pass per site and strand (the ALTs of a site share it), the rest of the reference
window as context on both sides; ``strands="both"`` averages the window and its reverse complement
as above (an RC-equivariant model, Caduceus-PS or -Ph, gives the two the same value). An **indel**
has no position-wise counterpart, so it is scored by the difference of pseudo-log-likelihoods of
the two windows (:mod:`genoseq.models.masked`: every base masked once), ``PLL(alt window) -
PLL(ref window)``, the masked analogue of the causal full-window ratio: both windows hold the same
stretch of genome, and it costs one forward pass per base of each window (``window_length`` rows
instead of one). :attr:`VariantEffectScorer.score_description` says which score a model gives.

A variant that cannot be scored gets a status instead of an LLR (:data:`STATUSES`) and a
``detail`` saying why: REF not matching the reference, a contig missing from it, symbolic or
missing ALTs (``<DEL>``, ``*``, breakends), REF running past the contig end, alleles longer
than half the window. :func:`require_scored` turns the first of them into an
:class:`~genoseq.InputError` naming the variant, for callers that refuse such input.

Nothing heavy is imported at module level.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Literal, NamedTuple

import numpy as np

from genoseq.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    # Only light imports here: jsonargparse executes this block when it builds the CLI parser.
    from genoseq.genome import Genome

DEFAULT_WINDOW = 256

# Per-ALT outcomes (the GENOSEQ_STATUS values and the TSV status column).
OK = "ok"
REF_MISMATCH = "ref_mismatch"
UNKNOWN_CONTIG = "unknown_contig"
OUT_OF_BOUNDS = "out_of_bounds"  # REF runs past the contig end: also flagged as a REF mismatch
SYMBOLIC = "symbolic"
INVALID_ALLELE = "invalid_allele"
TOO_LONG = "too_long"
STATUSES = (OK, REF_MISMATCH, UNKNOWN_CONTIG, OUT_OF_BOUNDS, SYMBOLIC, INVALID_ALLELE, TOO_LONG)


CAUSAL_SCORE = "log P(alt window) - log P(ref window), nats"
MASKED_SCORE = ("masked marginal: log P(ALT) - log P(REF) at the changed positions masked in the ref window "
                "(indels: PLL(alt window) - PLL(ref window), pseudo-log-likelihoods), nats")


def score_description(model) -> str:
    """What an LLR of ``model`` is (``genoseq vep``'s outputs and the API say it): a causal
    model's log-likelihood ratio of the windows, or a bidirectional model's masked marginal."""
    return MASKED_SCORE if getattr(model, "bidirectional", False) else CAUSAL_SCORE


class _Job(NamedTuple):
    """What one cache entry's value is computed from: ``kind`` ``"ll"`` (a causal model's log-
    likelihood of ``ids`` from ``offset`` on), ``"pll"`` (a masked model's pseudo-log-likelihood of
    ``ids``) or ``"mm"`` (the log-probabilities of ``targets`` at ``masked``, masked together)."""

    kind: str
    ids: np.ndarray
    offset: int = 0
    masked: tuple = ()
    targets: tuple = ()


@dataclass(frozen=True)
class Variant:
    """One REF/ALT pair at a 1-based position (as in VCF)."""

    chrom: str
    pos: int
    ref: str
    alt: str


@dataclass(frozen=True)
class VariantEffect:
    """The score of one ALT allele: ``llr`` is None unless ``status == "ok"``."""

    chrom: str
    pos: int
    ref: str
    alt: str
    llr: float | None
    status: str
    llr_forward: float | None = None
    llr_reverse: float | None = None
    detail: str | None = None  # why it was not scored
    field: str | None = None  # and which part of the variant is at fault: chrom, pos, ref or alt

    @property
    def scored(self) -> bool:
        return self.status == OK


def is_symbolic(alt: str | None) -> bool:
    """``<DEL>``-style, ``*`` (spanning deletion), ``.`` (no ALT) and breakend alleles."""
    return alt is None or alt in ("*", ".", "") or alt.startswith("<") or "[" in alt or "]" in alt


def window_bounds(contig_length: int, pos0: int, ref_length: int, window_length: int) -> tuple[int, int]:
    """Reference window ``[start, end)`` of ``window_length`` bases with the REF span in its middle.

    Shifted inward at a contig end so that it keeps its length where the contig allows.
    """
    left = (window_length - ref_length) // 2
    start = pos0 - left
    start = max(0, min(start, contig_length - window_length))
    return start, min(contig_length, start + window_length)


class VariantEffectScorer:
    """Score variants against a reference genome with a DNA language model (causal: log-likelihood
    ratios; masked: masked marginals, see the module docstring).

    >>> scorer = VariantEffectScorer(model, open_genome("ref.fa"))   # doctest: +SKIP
    >>> scorer.score([Variant("chr1", 1000, "A", "G")])[0].llr        # doctest: +SKIP

    Args:
        model: A :class:`GenoSeqLM` or the directory of a released one.
        genome: The reference (:func:`genoseq.genome.open_genome`) or its path.
        window_length: Bases in the reference window centred on each variant.
        strands: ``both`` averages the forward and reverse-complement LLRs; ``forward`` scores
            the forward strand only.
        batch_size: Windows per forward pass.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda:1``, ...
        bf16: Run the model under bf16 autocast on a GPU (faster; noisier LLRs).
        cache_size: Window likelihoods kept for reuse (least recently used are dropped).
        chunk_size: Variants planned and scored together (bounds memory on huge VCFs).
    """

    def __init__(
        self,
        model: "GenoSeqLM | str",  # noqa: F821 - not imported, see the TYPE_CHECKING note
        genome: "Genome | str",
        *,
        window_length: int = DEFAULT_WINDOW,
        strands: Literal["both", "forward"] = "both",
        batch_size: int = 64,
        device: str | None = "auto",
        bf16: bool = False,
        cache_size: int = 200_000,
        chunk_size: int = 4096,
    ) -> None:
        from genoseq.genome import open_genome
        from genoseq.models import GenoSeqLM
        from genoseq.runtime import resolve_device

        if window_length < 4:
            raise InputError(f"window_length must be >= 4, got {window_length}", field="window_length")
        if strands not in ("both", "forward"):
            raise InputError(f"strands must be 'both' or 'forward', got {strands!r}", field="strands")
        if batch_size < 1 or chunk_size < 1:
            raise InputError("batch_size and chunk_size must be >= 1", field="batch_size")
        self.device = resolve_device(device)
        if not isinstance(model, GenoSeqLM):
            model = GenoSeqLM.from_pretrained(model)
        self.model = model.to(self.device).eval()
        self.genome = genome if not isinstance(genome, (str, os.PathLike)) else open_genome(genome)
        self.tokenizer = model.tokenizer
        self.window_length = window_length
        self.strands = ("+", "-") if strands == "both" else ("+",)
        self.batch_size, self.chunk_size, self.cache_size = batch_size, chunk_size, cache_size
        self.bf16 = bf16 and self.device.type == "cuda"
        self.masked = bool(getattr(model, "bidirectional", False))
        self._cache: OrderedDict[tuple, float] = OrderedDict()
        self.windows_scored = 0  # forward-pass rows, for reporting (and tests)
        self.cache_hits = 0

    @property
    def max_allele_length(self) -> int:
        return self.window_length // 2

    @property
    def score_description(self) -> str:
        """What an LLR of this scorer's model is (:func:`score_description`)."""
        return score_description(self.model)

    # ------------------------------------------------------------------ planning
    def _plan(self, v: Variant) -> tuple[str, list[tuple[tuple, _Job, tuple, _Job]]]:
        """Status, and per strand (ref key, ref job, alt key, alt job): the strand's LLR is the alt
        job's value minus the ref job's."""
        if v.chrom not in self.genome.contigs:
            return UNKNOWN_CONTIG, []
        if is_symbolic(v.alt):
            return SYMBOLIC, []
        length = self.genome.contigs[v.chrom]
        pos0, r, a = v.pos - 1, len(v.ref), len(v.alt)
        if r == 0 or pos0 < 0 or pos0 + r > length:
            return OUT_OF_BOUNDS, []
        try:
            ref_ids = self.tokenizer.encode(v.ref)
            alt_ids = self.tokenizer.encode(v.alt)
        except InputError:
            return INVALID_ALLELE, []
        start, end = window_bounds(length, pos0, r, self.window_length)
        window = self.genome.fetch(v.chrom, start, end)
        i = pos0 - start
        if not np.array_equal(window[i : i + r], ref_ids):
            return REF_MISMATCH, []
        if max(r, a) > self.max_allele_length:
            return TOO_LONG, []
        alt_window = np.concatenate([window[:i], alt_ids, window[i + r :]])
        plans = []
        for strand in self.strands:
            site = (v.chrom, start, end, strand)
            alt_key = site + (pos0, v.ref.upper(), v.alt.upper())
            rc = strand == "-"
            ref_w = self.tokenizer.reverse_complement(window) if rc else window
            alt_w = self.tokenizer.reverse_complement(alt_window) if rc else alt_window
            if self.masked and r == a:  # masked marginal at the changed positions, of the ref window
                changed = [i + k for k in range(r) if ref_ids[k] != alt_ids[k]]
                where = tuple(len(window) - 1 - p if rc else p for p in changed)
                ref_t, alt_t = (tuple(int(x) for x in w[list(where)]) for w in (ref_w, alt_w))
                plans.append((site + ("mm", where, ref_t), _Job("mm", ref_w, masked=where, targets=ref_t),
                              site + ("mm", where, alt_t), _Job("mm", ref_w, masked=where, targets=alt_t)))
            elif self.masked:  # an indel: pseudo-log-likelihoods of the two windows
                plans.append((site + ("pll",), _Job("pll", ref_w), alt_key + ("pll",), _Job("pll", alt_w)))
            else:
                # Tokens before the variant have the same probabilities in both windows; reversed,
                # the variant starts after the right flank.
                offset = len(window) - i - r if rc else i
                plans.append((site + (offset,), _Job("ll", ref_w, offset), alt_key, _Job("ll", alt_w, offset)))
        return OK, plans

    def explain(self, v: Variant, status: str) -> tuple[str, str]:
        """The field at fault (``chrom``, ``pos``, ``ref`` or ``alt``) and why ``v`` has ``status``."""
        if status == UNKNOWN_CONTIG:
            names = list(self.genome.contigs)
            known = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
            return "chrom", f"unknown contig {v.chrom!r} (the reference has {known})"
        if status == SYMBOLIC:
            first = f"position 1: {v.alt[:1]!r}" if v.alt else "empty"
            return "alt", f"ALT {v.alt!r} is not a sequence of bases ({first}); symbolic and missing alleles are not scored"
        if status == OUT_OF_BOUNDS:
            if v.pos < 1 or not v.ref:
                return "pos", f"position {v.pos} with REF {v.ref!r}: positions start at 1 and REF needs a base"
            length = self.genome.contigs[v.chrom]
            return "pos", (f"REF at {v.pos}..{v.pos + len(v.ref) - 1} runs past the end of the sequence "
                           f"(length {length})")
        if status == INVALID_ALLELE:
            for field, allele in (("ref", v.ref), ("alt", v.alt)):
                try:
                    self.tokenizer.encode(allele)
                except InputError as err:
                    return field, f"{field.upper()} {allele!r}: {err.reason} (position {err.position})"
        if status == REF_MISMATCH:
            found = self.tokenizer.decode(self.genome.fetch(v.chrom, v.pos - 1, v.pos - 1 + len(v.ref)))
            return "ref", f"REF {v.ref!r} does not match the reference ({found!r}) at position {v.pos}"
        if status == TOO_LONG:
            field = "ref" if len(v.ref) >= len(v.alt) else "alt"
            n = max(len(v.ref), len(v.alt))
            return field, (f"allele of {n} bases is longer than the limit of {self.max_allele_length} "
                           f"(half the {self.window_length}-base window)")
        return "", status

    # ------------------------------------------------------------------ scoring
    def _log_likelihoods(self, jobs: list[_Job]) -> np.ndarray:
        """The value of each job (float64): a causal model's log-likelihoods share each family's
        prefix (:func:`genoseq.models.inference.shared_prefix_log_likelihood`); a masked model's
        come from :mod:`genoseq.models.masked`."""
        from genoseq.models import masked
        from genoseq.models.inference import shared_prefix_log_likelihood

        out = np.zeros(len(jobs), dtype=np.float64)
        for kind in ("ll", "mm", "pll"):
            chosen = [j for j, job in enumerate(jobs) if job.kind == kind]
            if not chosen:
                continue
            ids = [jobs[j].ids for j in chosen]
            options = dict(device=self.device, bf16=self.bf16)
            if kind == "ll":
                found, run = shared_prefix_log_likelihood(self.model, ids, [jobs[j].offset for j in chosen],
                                                          batch_size=self.batch_size, **options)
            elif kind == "mm":
                found, run = masked.masked_marginal_log_likelihood(
                    self.model, ids, [jobs[j].masked for j in chosen], [jobs[j].targets for j in chosen],
                    max_rows=self.batch_size, **options)
            else:
                found, run = masked.pseudo_log_likelihood(self.model, ids, max_rows=self.batch_size, **options)
            out[chosen] = found
            self.windows_scored += run
        return out

    def _lookup(self, key: tuple) -> float | None:
        value = self._cache.get(key)
        if value is not None:
            self._cache.move_to_end(key)
        return value

    def _store(self, key: tuple, value: float) -> None:
        self._cache[key] = value
        self._cache.move_to_end(key)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def _score_chunk(self, variants: list[Variant], progress_bar) -> list[VariantEffect]:
        planned = [self._plan(v) for v in variants]
        known: dict[tuple, float] = {}  # this chunk's window likelihoods (safe from eviction)
        pending: dict[tuple, _Job] = {}
        for status, plans in planned:
            for ref_key, ref_job, alt_key, alt_job in plans:
                for key, job in ((ref_key, ref_job), (alt_key, alt_job)):
                    cached = known.get(key)
                    if cached is None and key not in pending:
                        cached = self._lookup(key)
                    if cached is not None or key in pending:
                        self.cache_hits += 1
                        if cached is not None:
                            known[key] = cached
                    else:
                        pending[key] = job
        keys = list(pending)
        if keys:
            values = self._log_likelihoods([pending[k] for k in keys])
            for key, value in zip(keys, values):
                known[key] = float(value)
                self._store(key, float(value))
        if progress_bar is not None:
            progress_bar.update(len(variants))
        effects = []
        for v, (status, plans) in zip(variants, planned):
            if status != OK:
                field, detail = self.explain(v, status)
                effects.append(VariantEffect(v.chrom, v.pos, v.ref, v.alt, None, status, detail=detail, field=field))
                continue
            per_strand = []
            for ref_key, _, alt_key, _ in plans:
                per_strand.append(known[alt_key] - known[ref_key])
            llr = float(np.mean(per_strand))
            effects.append(VariantEffect(
                v.chrom, v.pos, v.ref, v.alt, llr, OK,
                llr_forward=per_strand[0], llr_reverse=per_strand[1] if len(per_strand) > 1 else None,
            ))
        return effects

    def score(self, variants: Iterable[Variant], progress: bool | str = False) -> list[VariantEffect]:
        """One :class:`VariantEffect` per variant, in order (``progress`` as in :mod:`genoseq.progress`)."""
        from genoseq.progress import Progress

        variants = list(variants)
        with Progress(len(variants), desc="vep", unit="variant", mode=progress) as bar:
            effects: list[VariantEffect] = []
            for i in range(0, len(variants), self.chunk_size):
                effects.extend(self._score_chunk(variants[i : i + self.chunk_size], bar))
        return effects

    def score_variant(self, chrom: str, pos: int, ref: str, alt: str) -> VariantEffect:
        """Score one variant (1-based ``pos``)."""
        return self.score([Variant(chrom, pos, ref, alt)])[0]


def score_variants(
    model,
    genome: "Genome | str",
    variants: Iterable[Variant],
    *,
    window_length: int = DEFAULT_WINDOW,
    strands: Literal["both", "forward"] = "both",
    batch_size: int = 64,
    device: str | None = "auto",
    bf16: bool = False,
    progress: bool | str = False,
) -> list[VariantEffect]:
    """One :class:`VariantEffect` per variant, in order (see :class:`VariantEffectScorer`)."""
    scorer = VariantEffectScorer(model, genome, window_length=window_length, strands=strands,
                                 batch_size=batch_size, device=device, bf16=bf16)
    return scorer.score(variants, progress=progress)


def require_scored(effects: list[VariantEffect], where: str = "variants") -> None:
    """An :class:`InputError` for the first variant that was not scored, naming it and its field
    (``variants[3].ref``), for callers that refuse unscorable variants instead of flagging them."""
    for i, e in enumerate(effects):
        if e.status != OK:
            loc = (where, i, e.field) if e.field else (where, i)
            name = f"{where}[{i}]" + (f".{e.field}" if e.field else "")
            raise InputError(f"{name}: {e.detail or e.status}", field=loc, kind=e.status)


__all__ = ["CAUSAL_SCORE", "DEFAULT_WINDOW", "MASKED_SCORE", "OK", "STATUSES", "Variant", "VariantEffect",
           "VariantEffectScorer", "is_symbolic", "require_scored", "score_description", "score_variants",
           "window_bounds"]
