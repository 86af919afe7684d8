"""``genoseq vep``: zero-shot variant-effect scores from a DNA language model.

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

Records that cannot be scored are written unscored with a per-ALT ``GENOSEQ_STATUS``: REF not
matching the reference (also FILTER ``GENOSEQ_REF_MISMATCH``), a contig missing from the
reference (FILTER ``GENOSEQ_UNKNOWN_CONTIG``, counted and warned about), symbolic or missing
ALTs (``<DEL>``, ``*``, breakends), alleles longer than half the window.

Nothing heavy is imported at module level, so building the CLI parser stays fast.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections import Counter, OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Literal

import numpy as np

from genoseq.errors import InputError
from genoseq.progress import ProgressChoice

if TYPE_CHECKING:  # pragma: no cover
    # Only light imports here: jsonargparse executes this block when it builds the CLI parser,
    # so importing the model (torch, Lightning) here would make `genoseq --help` take seconds.
    from genoseq.genome import Genome

DEFAULT_WINDOW = 256
INFO_LLR = "GENOSEQ_LLR"
INFO_STATUS = "GENOSEQ_STATUS"
FILTER_REF_MISMATCH = "GENOSEQ_REF_MISMATCH"
FILTER_UNKNOWN_CONTIG = "GENOSEQ_UNKNOWN_CONTIG"

# Per-ALT outcomes (the GENOSEQ_STATUS values and the TSV status column).
OK = "ok"
REF_MISMATCH = "ref_mismatch"
UNKNOWN_CONTIG = "unknown_contig"
OUT_OF_BOUNDS = "out_of_bounds"  # REF runs past the contig end: also flagged as a REF mismatch
SYMBOLIC = "symbolic"
INVALID_ALLELE = "invalid_allele"
TOO_LONG = "too_long"
STATUSES = (OK, REF_MISMATCH, UNKNOWN_CONTIG, OUT_OF_BOUNDS, SYMBOLIC, INVALID_ALLELE, TOO_LONG)


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
    """Score variants against a reference genome with a causal DNA language model.

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
            raise ValueError(f"window_length must be >= 4, got {window_length}")
        if strands not in ("both", "forward"):
            raise ValueError(f"strands must be 'both' or 'forward', got {strands!r}")
        if batch_size < 1 or chunk_size < 1:
            raise ValueError("batch_size and chunk_size must be >= 1")
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
        self._cache: OrderedDict[tuple, float] = OrderedDict()
        self.windows_scored = 0  # forward-pass rows, for reporting (and tests)
        self.cache_hits = 0

    @property
    def max_allele_length(self) -> int:
        return self.window_length // 2

    # ------------------------------------------------------------------ planning
    def _plan(self, v: Variant) -> tuple[str, list[tuple[tuple, np.ndarray, int, tuple, np.ndarray, int]]]:
        """Status, and per strand (ref key, ref ids, ref offset, alt key, alt ids, alt offset)."""
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
            ref_key = (v.chrom, start, end, strand)
            alt_key = (v.chrom, start, end, strand, pos0, v.ref.upper(), v.alt.upper())
            if strand == "+":
                # Tokens before the variant have the same probabilities in both windows.
                plans.append((ref_key, window, i, alt_key, alt_window, i))
            else:
                # Reversed, the variant starts after the right flank.
                flank = len(window) - i - r
                plans.append((
                    ref_key, self.tokenizer.reverse_complement(window), flank,
                    alt_key, self.tokenizer.reverse_complement(alt_window), flank,
                ))
        return OK, plans

    # ------------------------------------------------------------------ scoring
    def _log_likelihoods(self, windows: list[np.ndarray], offsets: list[int]) -> np.ndarray:
        """Sum of log P(x_t | x_<t) over t >= max(offset, 1) for each window (float64).

        Windows of one length whose first ``p = max(offset, 1)`` tokens agree (a reference
        window and its alternative alleles, on one strand) are a family: the shared prefix runs
        once, through the inference cache, and each member continues from it with its own
        tokens. For a causal model this is the same computation as a full pass per window, with
        the prefix done once (a SNV in a 256-base window: 384 positions instead of 512).
        """
        import torch

        p_first = [max(int(o), 1) for o in offsets]
        families: dict[tuple, list[int]] = {}
        for j, (w, p) in enumerate(zip(windows, p_first)):
            families.setdefault((len(w), p, w[:p].tobytes()), []).append(j)
        by_shape: dict[tuple[int, int], list[list[int]]] = {}
        for (length, p, _), members in families.items():
            by_shape.setdefault((length, p), []).append(members)

        out = np.zeros(len(windows), dtype=np.float64)
        per_pass = max(1, self.batch_size // 2)  # families per pass; their members fill the batch
        for (length, p), shape_families in by_shape.items():
            if p >= length:  # nothing is scored after the prefix
                continue
            for b in range(0, len(shape_families), per_pass):
                group = shape_families[b : b + per_pass]
                members = [j for family in group for j in family]
                owner = torch.tensor([f for f, family in enumerate(group) for _ in family])
                prefix = torch.from_numpy(np.stack([windows[family[0]][:p] for family in group]).astype(np.int64))
                rest = torch.from_numpy(np.stack([windows[j][p : length - 1] for j in members]).astype(np.int64))
                targets = torch.from_numpy(np.stack([windows[j][p:] for j in members]).astype(np.int64)).to(self.device)
                with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                    cache = self.model.new_cache(max_len=length)
                    logits = self.model(prefix.to(self.device), cache=cache)[:, -1:][owner.to(self.device)]  # predicts x_p
                    if rest.shape[1]:
                        cache = cache.select(owner)
                        logits = torch.cat([logits, self.model(rest.to(self.device), cache=cache)], dim=1)
                log_probs = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets[..., None]).squeeze(-1)
                counted = self.tokenizer.is_base(targets)
                out[members] = (log_probs * counted).sum(1).double().cpu().numpy()
                self.windows_scored += len(members)
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
        pending: dict[tuple, tuple[np.ndarray, int]] = {}
        for status, plans in planned:
            for ref_key, ref_ids, ref_off, alt_key, alt_ids, alt_off in plans:
                for key, ids, off in ((ref_key + (ref_off,), ref_ids, ref_off), (alt_key, alt_ids, alt_off)):
                    cached = known.get(key)
                    if cached is None and key not in pending:
                        cached = self._lookup(key)
                    if cached is not None or key in pending:
                        self.cache_hits += 1
                        if cached is not None:
                            known[key] = cached
                    else:
                        pending[key] = (ids, off)
        keys = list(pending)
        if keys:
            values = self._log_likelihoods([pending[k][0] for k in keys], [pending[k][1] for k in keys])
            for key, value in zip(keys, values):
                known[key] = float(value)
                self._store(key, float(value))
        if progress_bar is not None:
            progress_bar.update(len(variants))
        effects = []
        for v, (status, plans) in zip(variants, planned):
            if status != OK:
                effects.append(VariantEffect(v.chrom, v.pos, v.ref, v.alt, None, status))
                continue
            per_strand = []
            for ref_key, _, ref_off, alt_key, _, _ in plans:
                per_strand.append(known[alt_key] - known[ref_key + (ref_off,)])
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


# ---------------------------------------------------------------------- VCF input / output
def _open_vcf(path: Path):
    import pysam

    try:
        return pysam.VariantFile(str(path))
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read as VCF: {err}", path=str(path)) from err


def _needs_normalising(path: Path) -> bool:
    """True if a plain VCF has blank lines or bare ``\\r`` line endings, which htslib refuses."""
    import re

    bare_cr = re.compile(rb"\r(?!\n)")
    previous = b""
    with open(path, "rb") as handle:
        while block := handle.read(1 << 24):
            window = previous + block  # the last two bytes of the previous block cover boundaries
            if b"\n\n" in window or b"\n\r\n" in window:
                return True
            if any(m.start() < len(window) - 1 for m in bare_cr.finditer(window)):  # a final \r may meet its \n next
                return True
            previous = window[-2:]
    return bool(previous.endswith(b"\r"))


def _normalised_copy(source: Path, dest: Path) -> Path:
    """``source`` with ``\\n`` line endings and no blank lines, written to ``dest``."""
    with open(source, encoding="utf-8", errors="surrogateescape", newline=None) as fin, \
            open(dest, "w", encoding="utf-8", errors="surrogateescape", newline="\n") as fout:
        fout.writelines(line for line in fin if line.strip())
    return dest


@contextlib.contextmanager
def readable_vcf(path: str | os.PathLike) -> Iterator[Path]:
    """A path htslib can read: a plain-gzip VCF (not bgzip) is decompressed to a temporary file,
    and a plain VCF with blank lines or ``\\r`` (classic Mac) line endings is rewritten to one with
    ``\\n`` endings and no blank lines (a warning says so)."""
    import warnings

    from genoseq.fasta import detect_compression

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(2, "No such file or directory", str(path))
    if path.is_dir():
        raise InputError("is a directory, expected a VCF file", path=str(path))
    kind = detect_compression(path)
    if kind == "bgzip" or (kind == "plain" and not _needs_normalising(path)):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="genoseq-vep-") as tmp:
        plain = Path(tmp) / path.name.removesuffix(".gz")
        if kind == "gzip":
            try:
                with gzip.open(path, "rb") as fin, open(plain, "wb") as fout:
                    shutil.copyfileobj(fin, fout)
            except (OSError, EOFError) as err:
                raise InputError(f"cannot decompress: {err}", path=str(path)) from err
        if kind == "plain" or _needs_normalising(plain):
            warnings.warn(f"{path}: blank lines or \\r line endings; reading a copy with \\n endings and no blank lines",
                          stacklevel=3)
            source = path if kind == "plain" else plain.rename(plain.with_name("raw." + plain.name))
            _normalised_copy(source, plain)
        yield plain


def _iter_records(vcf, path: Path) -> Iterator:
    index = 0
    iterator = iter(vcf)
    while True:
        try:
            record = next(iterator)
        except StopIteration:
            return
        except (OSError, ValueError) as err:
            raise InputError(f"malformed VCF record after record {index}: {err}", path=str(path), record=f"#{index + 1}") from err
        index += 1
        yield record


def read_vcf_variants(path: str | os.PathLike) -> tuple[list[tuple[int, Variant]], int, object]:
    """All (record index, Variant) pairs of a VCF (one per ALT), the record count, and the full header."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(2, "No such file or directory", str(path))
    variants = []
    n_records = 0
    with _open_vcf(path) as vcf:
        for index, record in enumerate(_iter_records(vcf, path)):
            n_records += 1
            for alt in record.alts or ():
                variants.append((index, Variant(record.chrom, record.pos, record.ref, alt)))
        header = vcf.header.copy()  # after reading: holds contigs/tags htslib added on the way
    return variants, n_records, header


def _prepare_header(header, full_header, meta: dict, any_symbolic: bool) -> None:
    """Add the lines the output needs to the (unread) input header, in place."""
    have = {str(r) for r in header.records}
    for record in full_header.records:  # contigs, FILTERs, INFOs the input used without defining
        if str(record) not in have:
            header.add_record(record)
    # htslib writes END for symbolic alleles; it must be defined or the record cannot be written.
    if any_symbolic and "END" not in header.info:
        header.info.add("END", 1, "Integer", "End position of the variant (set by htslib for symbolic alleles)")
    if INFO_LLR not in header.info:
        header.info.add(
            INFO_LLR, "A", "Float",
            "genoseq zero-shot variant effect: log P(alt window) - log P(ref window) (nats) under the "
            f"language model, {meta['window_length']} bp reference window centred on the variant, "
            f"{'mean of both strands' if meta['strands'] == 'both' else 'forward strand'}; "
            "missing where not scored (see GENOSEQ_STATUS)",
        )
    if INFO_STATUS not in header.info:
        header.info.add(INFO_STATUS, "A", "String", f"genoseq scoring status per ALT: {', '.join(STATUSES)}")
    if FILTER_REF_MISMATCH not in header.filters:
        header.filters.add(FILTER_REF_MISMATCH, None, None, "REF does not match the reference genome; not scored by genoseq")
    if FILTER_UNKNOWN_CONTIG not in header.filters:
        header.filters.add(FILTER_UNKNOWN_CONTIG, None, None, "Contig is missing from the reference genome; not scored by genoseq")
    header.add_line("##genoseq_vep=" + json.dumps(meta, separators=(",", ":")))


def write_vcf(
    vcf_path: Path, out_path: Path, effects: dict[int, list[VariantEffect]], full_header, meta: dict
) -> None:
    """Copy the input VCF to ``out_path`` with GENOSEQ_LLR / GENOSEQ_STATUS and FILTERs added."""
    import pysam

    from genoseq.runtime import atomic_path

    any_symbolic = any(e.status == SYMBOLIC for per_record in effects.values() for e in per_record)
    mode = "wz" if out_path.name.endswith((".gz", ".bgz")) else "w"
    with _open_vcf(vcf_path) as vcf, atomic_path(out_path) as tmp:
        _prepare_header(vcf.header, full_header, meta, any_symbolic)
        with pysam.VariantFile(str(tmp), mode, header=vcf.header) as out:
            for index, record in enumerate(_iter_records(vcf, vcf_path)):
                per_alt = effects.get(index)
                if per_alt:
                    record.info[INFO_LLR] = tuple(e.llr for e in per_alt)
                    record.info[INFO_STATUS] = tuple(e.status for e in per_alt)
                    statuses = {e.status for e in per_alt}
                    if statuses & {REF_MISMATCH, OUT_OF_BOUNDS}:
                        record.filter.add(FILTER_REF_MISMATCH)
                    if UNKNOWN_CONTIG in statuses:
                        record.filter.add(FILTER_UNKNOWN_CONTIG)
                out.write(record)


def write_tsv(out_path: Path, effects: list[VariantEffect]) -> None:
    from genoseq.runtime import atomic_output

    def fmt(x: float | None) -> str:
        return "" if x is None else f"{x:.6g}"

    with atomic_output(out_path) as handle:
        handle.write("chrom\tpos\tref\talt\tllr\tstatus\tllr_forward\tllr_reverse\n")
        for e in effects:
            handle.write(f"{e.chrom}\t{e.pos}\t{e.ref}\t{e.alt}\t{fmt(e.llr)}\t{e.status}\t{fmt(e.llr_forward)}\t{fmt(e.llr_reverse)}\n")


# ---------------------------------------------------------------------- the job
def vep(
    model: str,
    reference: str,
    vcf: str,
    out: str,
    format: Literal["vcf", "tsv"] = "vcf",
    window_length: int = DEFAULT_WINDOW,
    strands: Literal["both", "forward"] = "both",
    batch_size: int = 64,
    device: str = "auto",
    bf16: bool = False,
    convert_gzip: bool = False,
    progress: bool | ProgressChoice = "auto",
) -> dict:
    """Score the variants of a VCF with a DNA language model (zero-shot log-likelihood ratio).

    Each ALT gets LLR = log P(alt window) - log P(ref window) over a reference window centred on
    the variant (both windows share the reference flanks, so indels compare the same stretch
    of genome), averaged over both strands by default. Output: the input VCF with
    INFO/GENOSEQ_LLR (Number=A) and INFO/GENOSEQ_STATUS added, or a TSV. Records whose REF does
    not match the reference get FILTER GENOSEQ_REF_MISMATCH, records on contigs missing from the
    reference GENOSEQ_UNKNOWN_CONTIG; neither is scored. A summary is written to ``<out>.json``.

    Args:
        model: Directory of a released model (``GenoSeqLM.save_pretrained``).
        reference: Reference genome: FASTA (plain or bgzip) or an HDF5 token store.
        vcf: Input VCF (plain, gzip or bgzip).
        out: Output path: a VCF (``.vcf``, or bgzip-compressed ``.vcf.gz``) or a TSV.
        format: ``vcf`` (annotated copy of the input) or ``tsv`` (chrom, pos, ref, alt, llr,
            status, llr_forward, llr_reverse; one row per ALT).
        window_length: Bases in the reference window centred on each variant.
        strands: ``both`` (average of forward and reverse-complement LLRs) or ``forward``.
        batch_size: Windows per forward pass.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda:1``, ...
        bf16: bf16 autocast on a GPU (faster, noisier LLRs).
        convert_gzip: Recompress a plain-gzip reference FASTA to bgzip (next to it) instead of
            refusing it.
        progress: ``auto`` (a live bar on a terminal, plain progress lines in a log file), ``bar``, ``lines`` or ``none``.

    Returns:
        The summary: counts per status, windows scored, cache hits, seconds.
    """
    from genoseq.genome import open_genome

    started = time.perf_counter()
    vcf_path, out_path = Path(vcf), Path(out)
    genome = open_genome(reference, convert_gzip=convert_gzip)
    with readable_vcf(vcf_path) as readable:
        summary = _run(model, genome, vcf_path, readable, out_path, format=format, window_length=window_length,
                       strands=strands, batch_size=batch_size, device=device, bf16=bf16, progress=progress,
                       reference=reference, started=started)
    return summary


def _run(model, genome, vcf_path: Path, readable: Path, out_path: Path, *, format, window_length, strands,
         batch_size, device, bf16, progress, reference, started) -> dict:
    indexed, n_records, full_header = read_vcf_variants(readable)
    scorer = VariantEffectScorer(
        model, genome, window_length=window_length, strands=strands, batch_size=batch_size, device=device, bf16=bf16
    )
    effects = scorer.score([v for _, v in indexed], progress=progress)

    counts = Counter(e.status for e in effects)
    unknown = sorted({e.chrom for e in effects if e.status == UNKNOWN_CONTIG})
    if unknown:
        n = counts[UNKNOWN_CONTIG]
        warnings.warn(
            f"{vcf_path}: {n} ALT allele(s) on {len(unknown)} contig(s) missing from the reference "
            f"({', '.join(unknown[:5])}{', ...' if len(unknown) > 5 else ''}): flagged {FILTER_UNKNOWN_CONTIG}, not scored",
            stacklevel=2,
        )
    if counts[REF_MISMATCH] or counts[OUT_OF_BOUNDS]:
        warnings.warn(
            f"{vcf_path}: {counts[REF_MISMATCH] + counts[OUT_OF_BOUNDS]} ALT allele(s) whose REF does not match "
            f"the reference: flagged {FILTER_REF_MISMATCH}, not scored",
            stacklevel=2,
        )

    meta = {
        "model": str(model), "reference": str(reference), "window_length": window_length,
        "strands": strands, "score": "log P(alt window) - log P(ref window), nats",
    }
    if format == "vcf":
        by_record: dict[int, list[VariantEffect]] = {}
        for (index, _), effect in zip(indexed, effects):
            by_record.setdefault(index, []).append(effect)
        write_vcf(readable, out_path, by_record, full_header, meta)
    elif format == "tsv":
        write_tsv(out_path, effects)
    else:
        raise ValueError(f"format must be 'vcf' or 'tsv', not {format!r}")

    summary = {
        **meta,
        "vcf": str(vcf_path), "out": str(out_path), "format": format,
        "records": n_records, "alleles": len(effects),
        "status_counts": {s: counts[s] for s in STATUSES if counts[s]},
        "unknown_contigs": unknown,
        "windows_scored": scorer.windows_scored, "cache_hits": scorer.cache_hits,
        "device": str(scorer.device), "seconds": round(time.perf_counter() - started, 3),
    }
    from genoseq.runtime import atomic_output

    with atomic_output(out_path.with_name(out_path.name + ".json")) as handle:
        handle.write(json.dumps(summary, indent=2) + "\n")
    print(
        f"wrote {out_path}: {n_records} records, {len(effects)} ALT alleles, {counts[OK]} scored; "
        + ", ".join(f"{s} {counts[s]}" for s in STATUSES if s != OK and counts[s])
        + f" ({summary['seconds']} s, {scorer.windows_scored} windows)",
        file=sys.stderr,
    )
    return summary


__all__ = ["Variant", "VariantEffect", "VariantEffectScorer", "read_vcf_variants", "vep", "window_bounds"]
