"""``genoseq interpret ism`` and ``genoseq interpret dependencies``: which bases a language model
cares about, as files.

``ism`` mutates every base of each region to the three others and writes the LLR of each
substitution (:func:`genoseq.tasks.interpret.ism.saturation_mutagenesis`, both strands, as
``genoseq vep`` scores a variant) into ``--out``:

* ``ism.npz`` -- ``names``, ``contigs``, ``starts`` (0-based genome start, 0 for a plain
  sequence), ``lengths``, ``sequences``, and ``llr``, ``llr_forward``, ``llr_reverse`` as
  (N, L_max, 4) float32 (columns A C G T; 0 at the reference base, NaN at an N and past each
  region's length) and ``importance`` (N, L_max), the mean |LLR| of a base's substitutions;
  loads with ``allow_pickle=False``;
* ``summary.tsv`` -- per region: name, contig, start, end (1-based, inclusive), length, mean
  importance, the most important position, and the most damaging substitution with its LLR;
* ``ism.bedgraph`` -- the importance in genome coordinates, when regions come from a genome;
* ``figures/<k>_<name>.png`` -- the logo of what each base is worth and the heatmap of every
  substitution, for the first ``figures`` regions;
* ``ism.json`` -- the settings, seconds and positions per second.

Regions come either from a genome (``--fasta genome.fa --region contig:start-end``, 1-based
inclusive as samtools writes them; the model then also sees up to ``flank`` bases on each side,
default its training window, so a base near the region's edge keeps its context) or as whole
sequences (``--input`` FASTA or table).

``dependencies`` writes the L x L nucleotide dependency map of one region or sequence
(:func:`~genoseq.tasks.interpret.ism.dependency_map`): ``dependencies.npz`` (``dep``,
``sequence``, ``name``, ``contig``, ``start``), ``dependencies.png`` (the heatmap) and
``dependencies.json``.

Each output folder is written beside its final name and moved into place when complete, so a
failed run leaves nothing that looks finished. torch is imported inside the functions.
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass
from typing import Literal

from genoseq.errors import InputError
from genoseq.options import OptionalTableInput, coerce
from genoseq.progress import ProgressChoice

NPZ = "ism.npz"
_REGION = re.compile(r"^(?P<contig>.+):(?P<start>[0-9][0-9,]*)-(?P<end>[0-9][0-9,]*)$")


@dataclass
class Target:
    """One region to interpret: ``ids[lo:hi]`` of the ``ids`` read (region plus its flanks);
    ``genome_start`` is the 0-based genome coordinate of ``ids[lo]`` (None for a plain sequence)."""

    name: str
    contig: str | None
    genome_start: int | None
    ids: "object"  # np.ndarray of token ids
    lo: int
    hi: int


def parse_region(text: str, contigs: dict[str, int]) -> tuple[str, int, int]:
    """``contig:start-end`` (1-based, inclusive; commas allowed) as ``(contig, start0, end0)``,
    0-based half-open, checked against the genome's contig lengths."""
    m = _REGION.match(text.strip())
    if not m:
        raise InputError(f"region {text!r} is not contig:start-end (1-based, inclusive, e.g. chr1:1001-2000)",
                         field="region", kind="format")
    contig = m["contig"]
    start, end = int(m["start"].replace(",", "")), int(m["end"].replace(",", ""))
    if contig not in contigs:
        names = ", ".join(list(contigs)[:5]) + (", ..." if len(contigs) > 5 else "")
        raise InputError(f"region {text!r}: contig {contig!r} is not in the genome (it has {names})",
                         field="region", kind="unknown_contig")
    if not 1 <= start <= end <= contigs[contig]:
        raise InputError(f"region {text!r} is not inside {contig} (1-{contigs[contig]})", field="region",
                         kind="out_of_bounds")
    return contig, start - 1, end


def read_targets(model, *, fasta: str | None, region: list[str] | None, table: OptionalTableInput, flank: int,
                 max_length: int) -> list[Target]:
    """The regions to interpret, from ``fasta`` + ``region`` or from ``table.input`` (one of the
    two), each checked against ``max_length`` before any model work."""
    import numpy as np

    if (fasta is None) == (table.input is None):
        raise InputError("give either --fasta with --region (regions of a genome) or --input (whole sequences)",
                         field="input", kind="missing")
    targets: list[Target] = []
    if fasta is not None:
        from genoseq.genome import open_genome

        if not region:
            raise InputError("--fasta needs at least one --region contig:start-end", field="region", kind="missing")
        genome = open_genome(fasta, convert_gzip=True)
        for text in region:
            contig, start, end = parse_region(text, genome.contigs)
            if end - start > max_length:
                raise InputError(f"region {text!r}: {end - start} bases is longer than the limit of {max_length} "
                                 "(interpret a shorter region, or raise --max_length)", field="region",
                                 kind="too_long")
            left, right = max(0, start - flank), min(genome.contigs[contig], end + flank)
            ids = np.asarray(genome.fetch(contig, left, right), dtype=np.uint8)
            targets.append(Target(text, contig, start, ids, start - left, end - left))
    else:
        if region:
            raise InputError("--region needs --fasta (a genome to take it from)", field="region", kind="missing")
        inputs = table.read()
        for k, (name, seq) in enumerate(zip(inputs.names, inputs.sequences)):
            if len(seq) > max_length:
                raise InputError(f"sequence {name!r} (#{k + 1}): {len(seq)} bases is longer than the limit of "
                                 f"{max_length} (interpret a shorter one, or raise --max_length)", field="input",
                                 kind="too_long")
            ids = model.tokenizer.encode(seq, name=name).astype(np.uint8)
            targets.append(Target(name, None, None, ids, 0, len(ids)))
    if not targets:
        raise InputError("no sequences to interpret", field="input", kind="empty")
    return targets


def _write_ism_table(path, targets: list[Target], results) -> None:
    """``summary.tsv``: per region its 1-based span, mean importance, the most important position
    and the substitution with the lowest LLR."""
    import numpy as np

    from genoseq.runtime import write_tsv
    from genoseq.tasks.interpret.ism import BASES

    rows = []
    for t, r in zip(targets, results):
        first = 1 + (t.genome_start or 0)
        top = int(np.nan_to_num(r.importance, nan=-np.inf).argmax())
        llr = np.nan_to_num(r.llr, nan=np.inf)
        wi, wb = np.unravel_index(int(llr.argmin()), llr.shape)
        rows.append([t.name, t.contig or "", str(first), str(first + len(r.llr) - 1), str(len(r.llr)),
                     f"{np.nanmean(r.importance):.6g}", str(first + top), f"{r.importance[top]:.6g}",
                     str(first + int(wi)), BASES[int(wb)], f"{r.llr[wi, wb]:.6g}"])
    write_tsv(path, ["name", "contig", "start", "end", "length", "mean_importance", "top_position", "top_importance",
                     "worst_position", "worst_base", "worst_llr"], rows)


def ism(
    model: str,
    out: str,
    fasta: str | None = None,
    region: str | list[str] | None = None,
    table: OptionalTableInput = OptionalTableInput(),
    flank: int | None = None,
    radius: int | None = 128,
    strands: Literal["both", "forward"] = "both",
    max_length: int = 10_000,
    figures: int = 10,
    block: int = 16,
    batch_size: int = 128,
    device: str = "auto",
    progress: bool | ProgressChoice = "auto",
) -> dict:
    """Zero-shot saturation mutagenesis with a language model: the LLR of every substitution.

    Args:
        model: Language model directory (``genoseq pretrain`` or ``genoseq convert``).
        out: Output folder (replaced when the run succeeds).
        fasta: Genome FASTA (or token store) to take ``region`` from.
        region: Region of the genome, ``contig:start-end`` (1-based, inclusive), or a list of
            them: ``--region '[chr:1001-2000, chr:5001-5500]'``.
        table: Instead of a genome: whole sequences to mutate (``--input`` a FASTA, TSV/CSV or
            GenomicBenchmarks folder, ``--split``, ``--sequence_column``, ``--label_column`` (read,
            not used); or ``--table.input``...).
        flank: Genome bases on each side the model sees as context (default: its training window).
        radius: Bases after a substitution whose change of log-likelihood is summed (``genoseq
            vep``'s default window); ``null``: to the end of the window. A bidirectional (masked)
            model's LLR is the masked marginal at the position (``radius`` does not apply).
        strands: ``both`` (mean of the forward and reverse-complement LLRs, as ``genoseq vep``)
            or ``forward``.
        max_length: Longest region (bases).
        figures: Write the logo and heatmap PNG of the first this many regions.
        block: Positions per shared prefix (a speed setting; results do not depend on it).
        batch_size: Rows per forward pass.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda:1``, ...
        progress: ``auto``, ``bar``, ``lines`` or ``none``.

    Returns:
        A summary: regions, positions, seconds, positions per second, output folder.
    """
    import numpy as np

    from genoseq.bed import write_bedgraph
    from genoseq.figures import lm_ism_figure
    from genoseq.models.inference import is_masked, scoring_window
    from genoseq.runtime import atomic_directory, atomic_output, safe_name, save_figure, write_json
    from genoseq.tasks.interpret.attribution import stack_padded
    from genoseq.tasks.interpret.ism import language_model, saturation_mutagenesis

    table = coerce(OptionalTableInput, table)
    lm = language_model(model, device)
    window = scoring_window(lm)[0]
    region = [region] if isinstance(region, str) else region
    targets = read_targets(lm, fasta=fasta, region=region, table=table, flank=window if flank is None else flank,
                           max_length=max_length)
    started = time.perf_counter()
    results = saturation_mutagenesis(lm, [t.ids for t in targets], regions=[(t.lo, t.hi) for t in targets],
                                     radius=radius, strands=strands, block=block, max_length=max_length,
                                     batch_size=batch_size, device=None, progress=progress)
    seconds = time.perf_counter() - started
    positions = sum(t.hi - t.lo for t in targets)
    lengths = np.array([t.hi - t.lo for t in targets], dtype=np.int64)
    lmax = int(lengths.max())
    summary = {"model": str(model), "fasta": fasta, "input": table.input, "n": len(targets), "positions": positions,
               "radius": None if is_masked(lm) else radius, "strands": strands,
               "score": "masked marginal" if is_masked(lm) else "log-likelihood ratio",
               "flank": window if flank is None else flank, "seconds": round(seconds, 2),
               "positions_per_second": round(positions / seconds, 2) if seconds > 0 else None}
    with atomic_directory(out) as tmp:
        np.savez_compressed(
            tmp / NPZ,
            names=np.array([t.name for t in targets], dtype=str),
            contigs=np.array([t.contig or "" for t in targets], dtype=str),
            starts=np.array([t.genome_start or 0 for t in targets], dtype=np.int64),
            lengths=lengths, sequences=np.array([r.sequence for r in results], dtype=str),
            llr=stack_padded([r.llr for r in results], lmax, fill=np.nan),
            llr_forward=stack_padded([r.llr_forward for r in results], lmax, fill=np.nan),
            llr_reverse=stack_padded([r.llr_reverse for r in results], lmax, fill=np.nan),
            importance=stack_padded([r.importance for r in results], lmax, (), fill=np.nan))
        _write_ism_table(tmp / "summary.tsv", targets, results)
        if any(t.contig for t in targets):
            tracks = sorted((t.contig, t.genome_start, r.importance) for t, r in zip(targets, results) if t.contig)
            with atomic_output(tmp / "ism.bedgraph") as handle:
                write_bedgraph(handle, tracks, name="ism_importance",
                               description="mean |LLR| (nats) of the three substitutions of each base")
        for k, (t, r) in enumerate(zip(targets[:figures], results)):
            title = f"{t.name}: saturation mutagenesis (LLR, nats, {strands} strand{'s' if strands == 'both' else ''})"
            fig = lm_ism_figure(r.llr, r.sequence, title=title, start=1 + (t.genome_start or 0))
            save_figure(fig, tmp / "figures" / f"{k + 1}_{safe_name(t.name)}.png", dpi=110)
        write_json(tmp / "ism.json", summary)
    regions = f"{len(targets)} region{'s' if len(targets) != 1 else ''}"
    print(f"wrote {out}: saturation mutagenesis of {regions}, {positions} positions "
          f"({seconds:.1f} s, {summary['positions_per_second']} positions/s)", file=sys.stderr)
    return summary


def dependencies(
    model: str,
    out: str,
    fasta: str | None = None,
    region: str | None = None,
    table: OptionalTableInput = OptionalTableInput(),
    strands: Literal["both", "forward"] = "both",
    max_length: int = 1_000,
    block: int = 16,
    batch_size: int = 128,
    device: str = "auto",
    progress: bool | ProgressChoice = "auto",
) -> dict:
    """The nucleotide dependency map of one region: how substituting base i changes the model's
    prediction at base j.

    Args:
        model: Language model directory (``genoseq pretrain`` or ``genoseq convert``).
        out: Output folder (replaced when the run succeeds).
        fasta: Genome FASTA (or token store) to take ``region`` from.
        region: One region of the genome, ``contig:start-end`` (1-based, inclusive).
        table: Instead of a genome: a FASTA or table whose first sequence is mapped (``--input``,
            ``--split``, ``--sequence_column``, ``--label_column`` (read, not used); or
            ``--table.input``...).
        strands: ``both`` (j after i from the forward strand, j before i from the reverse
            complement) or ``forward`` (j after i only).
        max_length: Longest region (bases; the map is L x L).
        block: Positions per shared prefix (a speed setting).
        batch_size: Rows per forward pass.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda:1``, ...
        progress: ``auto``, ``bar``, ``lines`` or ``none``.

    Returns:
        A summary: region, length, seconds, output folder.
    """
    import numpy as np

    from genoseq.figures import dependency_heatmap
    from genoseq.runtime import atomic_directory, atomic_output, save_figure, write_json
    from genoseq.tasks.interpret.ism import dependency_map, language_model

    table = coerce(OptionalTableInput, table)
    lm = language_model(model, device)
    targets = read_targets(lm, fasta=fasta, region=[region] if region else None, table=table, flank=0,
                           max_length=max_length)
    t = targets[0]
    started = time.perf_counter()
    result = dependency_map(lm, t.ids, strands=strands, block=block, max_length=max_length, batch_size=batch_size,
                            device=None, progress=progress)
    seconds = time.perf_counter() - started
    first = 1 + (t.genome_start or 0)
    summary = {"model": str(model), "name": t.name, "contig": t.contig, "start": first, "length": len(t.ids),
               "strands": strands, "seconds": round(seconds, 2)}
    with atomic_directory(out) as tmp:
        np.savez_compressed(tmp / "dependencies.npz", dep=result.dep, sequence=np.array(result.sequence),
                            name=np.array(t.name), contig=np.array(t.contig or ""), start=np.array(first - 1))
        fig = dependency_heatmap(result.dep, result.sequence, start=first,
                                       title=f"{t.name}: nucleotide dependencies ({strands} strand"
                                             f"{'s' if strands == 'both' else ''})")
        save_figure(fig, tmp / "dependencies.png", dpi=110)
        write_json(tmp / "dependencies.json", summary)
    print(f"wrote {out}: dependency map of {t.name} ({len(t.ids)} bases, {seconds:.1f} s)", file=sys.stderr)
    return summary


__all__ = ["dependencies", "ism", "parse_region", "read_targets"]
