"""``genoseq vep``: zero-shot variant-effect scores of a VCF from a DNA language model.

The job reads the VCF, scores every ALT with :mod:`genoseq.tasks.variants` (the LLR, its
window, strands and statuses are defined there) and writes the VCF back annotated, or a TSV.

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
from collections import Counter
from pathlib import Path
from typing import Iterator, Literal

from genoseq.errors import InputError
from genoseq.progress import ProgressChoice
from genoseq.runtime import atomic_outputs, require_file, write_json
from genoseq.tasks.variants import (
    DEFAULT_WINDOW, OK, OUT_OF_BOUNDS, REF_MISMATCH, STATUSES, SYMBOLIC, UNKNOWN_CONTIG, Variant, VariantEffect,
    VariantEffectScorer,
)

INFO_LLR = "GENOSEQ_LLR"
INFO_STATUS = "GENOSEQ_STATUS"
FILTER_REF_MISMATCH = "GENOSEQ_REF_MISMATCH"
FILTER_UNKNOWN_CONTIG = "GENOSEQ_UNKNOWN_CONTIG"


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

    path = require_file(path)
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
    path = require_file(path)
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
            f"genoseq zero-shot variant effect: {meta['score']} under the "
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
    of genome), averaged over both strands by default. A bidirectional (masked) model gives the
    masked marginal instead (log P(ALT) - log P(REF) at the changed positions, masked in the
    reference window; indels: the difference of the two windows' pseudo-log-likelihoods); the
    VCF header and ``<out>.json`` (``score``) say which. Output: the input VCF with
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
    # Over 80 lines for its signature and Args, which are the command's options and help.
    from genoseq.genome import open_genome

    started = time.perf_counter()
    if format not in ("vcf", "tsv"):
        raise InputError(f"format must be 'vcf' or 'tsv', not {format!r}", field="format")
    vcf_path, out_path = Path(vcf), Path(out)
    genome = open_genome(reference, convert_gzip=convert_gzip)
    # the output and its summary (<out>.json) appear together or not at all
    with readable_vcf(vcf_path) as readable, atomic_outputs():
        indexed, n_records, full_header = read_vcf_variants(readable)
        scorer = VariantEffectScorer(model, genome, window_length=window_length, strands=strands,
                                     batch_size=batch_size, device=device, bf16=bf16)
        effects = scorer.score([v for _, v in indexed], progress=progress)
        counts = Counter(e.status for e in effects)
        unknown = _warn_unscored(vcf_path, effects, counts)
        meta = {
            "model": str(model), "reference": str(reference), "window_length": window_length,
            "strands": strands, "score": scorer.score_description,
        }
        if format == "vcf":
            by_record: dict[int, list[VariantEffect]] = {}
            for (index, _), effect in zip(indexed, effects):
                by_record.setdefault(index, []).append(effect)
            write_vcf(readable, out_path, by_record, full_header, meta)
        else:
            write_tsv(out_path, effects)
        summary = {
            **meta,
            "vcf": str(vcf_path), "out": str(out_path), "format": format,
            "records": n_records, "alleles": len(effects),
            "status_counts": {s: counts[s] for s in STATUSES if counts[s]},
            "unknown_contigs": unknown,
            "windows_scored": scorer.windows_scored, "cache_hits": scorer.cache_hits,
            "device": str(scorer.device), "seconds": round(time.perf_counter() - started, 3),
        }
        write_json(out_path.with_name(out_path.name + ".json"), summary)
    print(
        f"wrote {out_path}: {n_records} records, {len(effects)} ALT alleles, {counts[OK]} scored; "
        + ", ".join(f"{s} {counts[s]}" for s in STATUSES if s != OK and counts[s])
        + f" ({summary['seconds']} s, {scorer.windows_scored} windows)",
        file=sys.stderr,
    )
    return summary


def _warn_unscored(vcf_path: Path, effects: list[VariantEffect], counts: Counter) -> list[str]:
    """Warn about ALTs on contigs the reference lacks and REF mismatches; the unknown contigs."""
    unknown = sorted({e.chrom for e in effects if e.status == UNKNOWN_CONTIG})
    if unknown:
        n = counts[UNKNOWN_CONTIG]
        warnings.warn(
            f"{vcf_path}: {n} ALT allele(s) on {len(unknown)} contig(s) missing from the reference "
            f"({', '.join(unknown[:5])}{', ...' if len(unknown) > 5 else ''}): flagged {FILTER_UNKNOWN_CONTIG}, not scored",
            stacklevel=3,
        )
    if counts[REF_MISMATCH] or counts[OUT_OF_BOUNDS]:
        warnings.warn(
            f"{vcf_path}: {counts[REF_MISMATCH] + counts[OUT_OF_BOUNDS]} ALT allele(s) whose REF does not match "
            f"the reference: flagged {FILTER_REF_MISMATCH}, not scored",
            stacklevel=3,
        )
    return unknown


__all__ = ["read_vcf_variants", "readable_vcf", "vep", "write_tsv", "write_vcf"]
