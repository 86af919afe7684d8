"""Genome annotations: GFF3, GenBank and BED features, bigWig signal, and per-base class labels.

Reading goes through libraries, not hand-written parsers: gffutils parses each GFF3 feature
line (attributes, URL escapes, multi-valued attributes), Biopython reads GenBank records,
pyBigWig reads bigWig, and :func:`genoseq.bed.read_bed` reads BED. genoseq only walks the lines
of a GFF3 file itself, so that every error names the file and line, and so that a Prokka-style
``##FASTA`` section (which gffutils stops at) becomes the annotation's genome
(:meth:`Annotation.genome`, a :class:`~genoseq.genome.MemoryGenome`).

Every feature is a :class:`Feature`: contig, 0-based half-open ``start``/``end``, strand, type,
name, product, phase and the line it came from.

Per-base labels (:func:`label_bases`) turn features into one class per base and strand for
segmentation. The classes come from the annotation's feature types through a type -> class map
(:data:`DEFAULT_CLASS_MAP`, changed with :func:`parse_class_map`): ``intergenic`` (no mapped
feature on that strand), ``CDS_1``/``CDS_2``/``CDS_3`` (codon position, counted from the CDS's
first complete codon on its own strand, GFF phase respected), ``tRNA``, ``rRNA``,
``other_RNA`` (ncRNA, tmRNA, misc_RNA...), and any class a user maps a type to. Types the map
does not name are ignored (counted). **Overlap rule**: where features of different classes
cover a base on the same strand, the class listed later in :attr:`ClassScheme.classes` wins
(the default order puts RNAs after CDS, so an RNA inside a CDS keeps its label); two CDS that
overlap on a strand give the bases to the one that comes later in the file. Overlapping bases
are counted in :class:`LabelStats`.
"""

from __future__ import annotations

import io
import os
import warnings
from collections import Counter
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Iterable, Sequence
from urllib.parse import unquote

import numpy as np

from genoseq.bigwig import BigWigSignal  # noqa: F401 - part of this module's API
from genoseq.errors import InputError
from genoseq.fasta import _check_exists, open_text
from genoseq.runtime import require_file

__all__ = [
    "Feature", "Annotation", "read_annotation", "read_gff3", "read_genbank", "read_bed_features",
    "BigWigSignal", "ClassScheme", "DEFAULT_CLASS_MAP", "parse_class_map", "class_scheme",
    "LabelStats", "label_bases", "INTERGENIC", "IGNORE",
]

INTERGENIC = "intergenic"
IGNORE = -100  # label of bases no loss sees (the convention of torch's cross entropy)

#: feature type -> class; a type not listed is ignored. Order = precedence (later wins).
DEFAULT_CLASS_MAP: dict[str, str] = {
    "CDS": "CDS",
    "tRNA": "tRNA",
    "rRNA": "rRNA",
    "tmRNA": "other_RNA",
    "ncRNA": "other_RNA",
    "misc_RNA": "other_RNA",
    "RNase_P_RNA": "other_RNA",
    "SRP_RNA": "other_RNA",
    "antisense_RNA": "other_RNA",
}
CODING = "CDS"  # the class split into three codon positions
CODON_CLASSES = ("CDS_1", "CDS_2", "CDS_3")


@dataclass(frozen=True)
class Feature:
    """One annotated feature (one GFF3 line, one part of a GenBank location, one BED line).

    ``start``/``end`` are 0-based half-open; ``strand`` is ``"+"``, ``"-"`` or ``"."``;
    ``phase`` is the GFF3 phase of a CDS (bases before its first complete codon), else None.
    """

    contig: str
    start: int
    end: int
    strand: str
    type: str
    name: str | None = None
    product: str | None = None
    id: str | None = None
    phase: int | None = None
    score: float | None = None
    line: int | None = None
    extra: tuple[str, ...] = ()  # BED columns after the sixth

    def __len__(self) -> int:
        return self.end - self.start


@dataclass
class Annotation:
    """Features of one file, plus the sequences it carries (GFF3 ``##FASTA``, GenBank ORIGIN)."""

    features: list[Feature]
    path: str
    sequences: dict[str, str] = field(default_factory=dict)
    format: str = "gff3"

    def types(self) -> Counter:
        return Counter(f.type for f in self.features)

    def contigs(self) -> list[str]:
        return list(dict.fromkeys(f.contig for f in self.features))

    def genome(self):
        """The carried sequences as a :class:`~genoseq.genome.MemoryGenome` (an
        :class:`InputError` when the file has none)."""
        from genoseq.genome import MemoryGenome

        if not self.sequences:
            raise InputError("the annotation holds no sequences (no ##FASTA section or ORIGIN); give the genome",
                             path=self.path)
        return MemoryGenome(self.sequences, path=self.path)

    def write_fasta(self, path: str | os.PathLike, width: int = 80) -> Path:
        """Write the carried sequences as FASTA (atomically)."""
        from genoseq.runtime import atomic_output

        if not self.sequences:
            raise InputError("the annotation holds no sequences to write", path=self.path)
        with atomic_output(path) as handle:
            for name, seq in self.sequences.items():
                handle.write(f">{name}\n")
                handle.writelines(seq[i : i + width] + "\n" for i in range(0, len(seq), width))
        return Path(path)


# ---------------------------------------------------------------------- readers
GFF3_DIRECTIVES = ("##gff-version", "##sequence-region", "##FASTA")  # a file with any of these is GFF3


def sniff_format(path: str | os.PathLike) -> str:
    """``gff3``, ``genbank`` or ``bed`` from the first non-blank, non-comment line or GFF3 directive
    (gzip transparent)."""
    with open_text(path) as handle:
        for raw in handle:
            line = raw.strip()
            if not line:
                continue
            if line.startswith(GFF3_DIRECTIVES) or _gff3_like(raw):
                return "gff3"
            if line.startswith("LOCUS"):
                return "genbank"
            if line.startswith(("track", "browser")) or (not line.startswith("#") and len(line.split()) >= 3):
                return "bed"
            if line.startswith("#"):
                continue
            break
    raise InputError("not a GFF3, GenBank or BED file (from its first lines)", path=str(path))


def _gff3_like(raw: str) -> bool:
    """Whether a line of 9 or more tab-separated columns reads better as GFF3 than as BED9 and up:
    GFF3 has integers in columns 4 and 5 and a strand in column 7, BED integers in 2, 3 and 7."""
    cols = raw.rstrip("\r\n").split("\t")
    if len(cols) < 9 or raw.startswith("#"):
        return False
    gff = _is_int(cols[3]) + _is_int(cols[4]) + (cols[6] in ("+", "-", ".", "?"))
    return gff > _is_int(cols[1]) + _is_int(cols[2]) + _is_int(cols[6])


def _is_int(text: str) -> bool:
    return text.lstrip("-").isdigit()


def read_annotated_genome(annotation: str | os.PathLike, genome: str | os.PathLike | None = None):
    """An annotation and the :class:`~genoseq.genome.Genome` it describes: ``genome`` (FASTA or
    token store), or the sequences the annotation carries when it is None."""
    from genoseq.genome import open_genome

    for path in (annotation, genome):
        if path is not None:
            require_file(path)
    ann = read_annotation(annotation)
    return ann, (open_genome(genome) if genome is not None else ann.genome())


def read_annotation(path: str | os.PathLike) -> Annotation:
    """Read GFF3 (plain or gzip, with or without ``##FASTA``), GenBank or BED, by content."""
    path = Path(path)
    _check_exists(path)
    kind = sniff_format(path)
    if kind == "genbank":
        return read_genbank(path)
    if kind == "bed":
        return read_bed_features(path)
    return read_gff3(path)


def _attr(attributes, *keys: str) -> str | None:
    """The values of the first of ``keys`` that has any, joined by commas."""
    return next((",".join(attributes[key]) for key in keys if attributes.get(key)), None)


def read_gff3(path: str | os.PathLike) -> Annotation:
    """Features of a GFF3 file; its ``##FASTA`` section (if any) in :attr:`Annotation.sequences`.

    Each feature line is parsed by gffutils (``feature_from_line``; ``%3B`` escapes decoded in seqid,
    type and attributes; type and attributes as UTF-8, the seqid as the FASTA readers name contigs).
    Errors name file and line: fewer than 9 columns, an empty seqid or type, a coordinate not an
    integer >= 1, start > end, a bad strand or phase, text not UTF-8.
    """
    from gffutils import constants
    from gffutils.feature import feature_from_line

    path = Path(path)
    _check_exists(path)
    spath = str(path)
    features: list[Feature] = []
    fasta_lines: list[str] = []
    fasta_start = None
    with open_text(path) as handle:
        for line_no, raw in enumerate(handle, start=1):
            line = raw.rstrip("\r\n")
            if fasta_start is not None:
                fasta_lines.append(line)
                continue
            if line.startswith("##FASTA") or line.startswith(">"):
                fasta_start = line_no + (0 if line.startswith(">") else 1)
                if line.startswith(">"):
                    fasta_lines.append(line)
                continue
            if not line.strip() or line.startswith("#"):
                continue
            line, columns = _gff_columns(line, spath, line_no)
            try:
                feat = feature_from_line(line, dialect=constants.dialect, strict=False)
            except (ValueError, IndexError) as err:
                raise InputError(f"cannot parse GFF3 feature line: {err}", path=spath, line=line_no) from None
            features.append(_gff_feature(feat, columns, spath, line_no))
    sequences = _parse_fasta_section(fasta_lines, spath, fasta_start) if fasta_lines else {}
    return Annotation(features, spath, sequences, "gff3")


def _gff_columns(line: str, path: str, line_no: int) -> tuple[str, list[str]]:
    """The line as UTF-8 and its 9 columns, checked before gffutils (which strips the line and reads 1_0 as 10)."""
    try:
        line = line.encode("ascii", "surrogateescape").decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("the line is not UTF-8 text", path=path, line=line_no) from None
    columns = line.split("\t")
    if len(columns) != 9:
        raise InputError(f"a feature line needs 9 tab-separated columns, found {len(columns)}", path=path, line=line_no)
    for col, what in ((0, "seqid"), (2, "type"), (3, "start"), (4, "end")):
        value = columns[col]
        if not value.strip() or (col > 2 and not (value.isascii() and value.isdigit() and int(value) >= 1)):
            need = "an integer >= 1 (GFF3 is 1-based)" if col > 2 else "not empty"
            raise InputError(f"{what} {value!r} must be {need}", path=path, line=line_no)
    return line, columns


def _gff_feature(feat, columns: list[str], path: str, line_no: int) -> Feature:
    start, end = int(columns[3]), int(columns[4])
    if start > end:
        raise InputError(f"start {start} is greater than end {end}", path=path, line=line_no)
    strand = feat.strand if feat.strand in ("+", "-") else "."
    if feat.strand not in ("+", "-", ".", "?"):
        raise InputError(f"strand {feat.strand!r} is not +, -, . or ?", path=path, line=line_no)
    phase = None
    if feat.frame not in (".", "", None):
        if feat.frame not in ("0", "1", "2"):
            raise InputError(f"phase {feat.frame!r} is not 0, 1, 2 or .", path=path, line=line_no)
        phase = int(feat.frame)
    score = None
    if feat.score not in (".", "", None):
        try:
            score = float(feat.score)
        except ValueError:
            raise InputError(f"score {feat.score!r} is not a number", path=path, line=line_no) from None
    attrs = {key.strip(): values for key, values in feat.attributes.items()}  # "ID=a; Name=b" too
    # the contig named as the FASTA readers name it (bytes past ASCII kept as surrogates), so it matches the genome
    contig = unquote(columns[0].encode().decode("ascii", "surrogateescape"), "ascii", "surrogateescape")
    return Feature(contig, start - 1, end, strand, unquote(feat.featuretype),
                   name=_attr(attrs, "Name", "gene", "locus_tag"), product=_attr(attrs, "product"),
                   id=_attr(attrs, "ID"), phase=phase, score=score, line=line_no)


def _parse_fasta_section(lines: list[str], path: str, first_line: int) -> dict[str, str]:
    """The ``##FASTA`` section through Biopython, each record checked by the tokenizer."""
    from Bio import SeqIO

    from genoseq.tokenizer import Tokenizer

    text = "\n".join(lines).lstrip()  # Biopython refuses blank lines before the first header
    if not text.startswith(">"):
        raise InputError("the ##FASTA section does not start with a '>' header", path=path, line=first_line)
    tokenizer = Tokenizer()
    sequences: dict[str, str] = {}
    for record in SeqIO.parse(io.StringIO(text), "fasta"):
        seq = str(record.seq)
        if record.id in sequences or not record.id or not seq:
            why = "has no name" if not record.id else "has no sequence" if not seq else "appears twice"
            raise InputError(f"a contig of the ##FASTA section {why}", path=path, record=record.id or None)
        tokenizer.encode(seq, name=record.id, path=path)  # bad characters: named with their position
        sequences[record.id] = seq
    return sequences


def read_genbank(path: str | os.PathLike) -> Annotation:
    """Features and sequences of a GenBank file (Biopython). A compound location (``join``) gives
    one :class:`Feature` per part (CDS phases carried across them, a part on another record on its contig)."""
    from Bio import BiopythonParserWarning, SeqIO

    path = Path(path)
    _check_exists(path)
    spath = str(path)
    features: list[Feature] = []
    sequences: dict[str, str] = {}
    try:
        with open_text(path) as handle, warnings.catch_warnings():
            warnings.filterwarnings("error", "(Premature end|Expected sequence length)", BiopythonParserWarning)
            records = list(SeqIO.parse(handle, "genbank"))
    except (ValueError, BiopythonParserWarning) as err:
        raise InputError(f"cannot parse GenBank: {err}", path=spath) from None
    names = [r.id if r.id and r.id != "<unknown id>" else r.name for r in records]
    twice = [name for name, n in Counter(names).items() if n > 1]
    if twice:
        raise InputError("two records have this name", path=spath, record=twice[0])
    for contig, record in zip(names, records):
        try:
            sequences[contig] = str(record.seq)
        except Exception:  # noqa: BLE001 - a record without sequence (UndefinedSequenceError)
            pass
        for feat in record.features:
            if feat.location is None:  # Biopython warned with the location's text
                raise InputError(f"cannot read the location of a {feat.type} feature", path=spath, record=contig)
            if feat.type != "source":
                features.extend(_genbank_parts(feat, contig, spath))
    if not features and not sequences:
        raise InputError("no GenBank records found", path=spath)
    return Annotation(features, spath, sequences, "genbank")


def _genbank_parts(feat, contig: str, path: str) -> list[Feature]:
    q = feat.qualifiers
    name = (q.get("gene") or q.get("locus_tag") or [None])[0]
    product = (q.get("product") or [None])[0]
    ident = (q.get("locus_tag") or q.get("protein_id") or [None])[0]
    codon_start = (q.get("codon_start") or ["1"])[0]
    if codon_start not in ("1", "2", "3"):
        raise InputError(f"codon_start {codon_start!r} of a {feat.type} is not 1, 2 or 3", path=path, record=contig)
    out, done = [], 0  # bases of the feature before this part, in reading order
    for part in feat.location.parts:
        strand = "+" if part.strand == 1 else "-" if part.strand == -1 else "."
        start, end = int(part.start), int(part.end)
        phase = (int(codon_start) - 1 - done) % 3 if feat.type == "CDS" else None
        out.append(Feature(part.ref or contig, start, end, strand, feat.type, name=name, product=product, id=ident,
                           phase=phase))
        done += end - start
    return out


def read_bed_features(path: str | os.PathLike) -> Annotation:
    """BED intervals (:func:`genoseq.bed.read_bed`) as features whose type is the BED name."""
    from genoseq.bed import read_bed

    features = [Feature(b.contig, b.start, b.end, b.strand or ".", b.name or "feature", name=b.name, score=b.score,
                        extra=b.extra) for b in read_bed(path)]
    return Annotation(features, str(path), {}, "bed")


# ---------------------------------------------------------------------- per-base labels
def parse_class_map(text: str | dict | None) -> dict[str, str]:
    """``"type=class,type=class"`` (``class`` ``-`` ignores the type) over :data:`DEFAULT_CLASS_MAP`.

    A mapping given as a dict is merged the same way. The result keeps the default order, new
    types after it in the order given.
    """
    mapping = dict(DEFAULT_CLASS_MAP)
    if not text:
        return mapping
    pairs = text.items() if isinstance(text, dict) else []
    if isinstance(text, str):
        pairs = []
        for item in (s.strip() for s in text.split(",")):
            if not item:
                continue
            if "=" not in item:
                raise InputError(f"class_map entry {item!r} is not type=class", field="class_map", kind="bad_class_map")
            key, value = (s.strip() for s in item.split("=", 1))
            if not key or not value:
                raise InputError(f"class_map entry {item!r} is not type=class", field="class_map", kind="bad_class_map")
            pairs.append((key, value))
    for key, value in pairs:
        if value in ("-", "ignore", "none"):
            mapping.pop(key, None)
        elif value == INTERGENIC or value in CODON_CLASSES:
            raise InputError(f"class name {value!r} is reserved", field="class_map", kind="bad_class_map")
        else:
            mapping[key] = value
    return mapping


@dataclass(frozen=True)
class ClassScheme:
    """Per-base classes (index = label id) and the feature type -> class map behind them."""

    classes: tuple[str, ...]
    type_map: dict[str, str]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def coding(self) -> tuple[int, ...]:
        """Label ids of the three codon positions (empty when there is no CDS class)."""
        return tuple(self.classes.index(c) for c in CODON_CLASSES if c in self.classes)

    def feature_classes(self) -> list[str]:
        """Classes as features (``CDS`` for the three codon positions), without intergenic."""
        out = []
        for c in self.classes[1:]:
            c = CODING if c in CODON_CLASSES else c
            if c not in out:
                out.append(c)
        return out

    def to_dict(self) -> dict:
        return {"classes": list(self.classes), "type_map": dict(self.type_map)}

    @classmethod
    def from_dict(cls, data: dict) -> "ClassScheme":
        return cls(tuple(data["classes"]), dict(data["type_map"]))


def class_scheme(features: Iterable[Feature], class_map: str | dict | None = None, *, path: str | None = None) -> ClassScheme:
    """The classes of an annotation: intergenic plus each mapped class that occurs (CDS as its
    three codon positions), in the map's order. Fewer than two classes is an :class:`InputError`."""
    mapping = parse_class_map(class_map)
    present = {f.type for f in features}
    classes = [INTERGENIC]
    for type_, cls in mapping.items():
        if type_ not in present:
            continue
        names = CODON_CLASSES if cls == CODING else (cls,)
        classes.extend(n for n in names if n not in classes)
    if len(classes) < 2:
        shown = ", ".join(sorted(present)[:8]) or "none"
        raise InputError(f"the class map leaves a single class ({INTERGENIC}): no feature type maps to a class "
                         f"(types in the annotation: {shown})", path=path, field="class_map", kind="single_class")
    return ClassScheme(tuple(classes), {t: c for t, c in mapping.items() if t in present})


@dataclass
class LabelStats:
    """What :func:`label_bases` did: features used, ignored, clipped, on unknown contigs, overlaps."""

    features: int = 0
    ignored_types: dict[str, int] = field(default_factory=dict)
    unknown_contigs: dict[str, int] = field(default_factory=dict)
    clipped: int = 0
    overlap_bases: int = 0  # bases where a feature of another class was overwritten (same strand)
    cds_overlap_bases: int = 0  # bases of one CDS relabelled by another CDS (same strand)
    labelled_bases: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def label_bases(
    features: Sequence[Feature],
    contigs: dict[str, int],
    scheme: ClassScheme,
    *,
    path: str | None = None,
    warn: bool = True,
) -> tuple[dict[str, np.ndarray], LabelStats]:
    """Per-base labels ``{contig: uint8 (2, length)}``: row 0 the + strand, row 1 the - strand,
    both indexed by + strand position; values index ``scheme.classes``.

    Features on contigs the genome lacks are counted and warned about (an :class:`InputError`
    when no feature lies on a genome contig); features past a contig end are clipped (counted,
    the first named by file and line); an unstranded feature labels both strands. Overlaps
    follow the rule in the module docstring.
    """
    stats = LabelStats()
    labels = {name: np.zeros((2, length), dtype=np.uint8) for name, length in contigs.items()}
    rank = {c: i for i, c in enumerate(scheme.classes)}
    cds_ids = scheme.coding
    first_clip = None
    on_genome = 0
    order = sorted(range(len(features)), key=lambda i: rank.get(_class_of(features[i], scheme), -1))  # precedence
    for i in order:
        f = features[i]
        cls = scheme.type_map.get(f.type)
        if cls is None:
            stats.ignored_types[f.type] = stats.ignored_types.get(f.type, 0) + 1
            continue
        if f.contig not in contigs:
            stats.unknown_contigs[f.contig] = stats.unknown_contigs.get(f.contig, 0) + 1
            continue
        on_genome += 1
        length = contigs[f.contig]
        start, end = max(f.start, 0), min(f.end, length)
        if (start, end) != (f.start, f.end):
            stats.clipped += 1
            first_clip = first_clip or f
        if end <= start:
            continue
        stats.features += 1
        rows = (0, 1) if f.strand == "." else ((0,) if f.strand == "+" else (1,))
        for row in rows:
            view = labels[f.contig][row, start:end]
            if cls == CODING:
                strand = "-" if row == 1 else "+"
                values = _codon_labels(f, start, end, strand, cds_ids)
                stats.cds_overlap_bases += int(np.isin(view, cds_ids).sum())
                stats.overlap_bases += int(((view != 0) & ~np.isin(view, cds_ids)).sum())
            else:
                values = rank[cls]
                stats.overlap_bases += int(((view != 0) & (view != values)).sum())
            view[:] = values
    if features and on_genome == 0:
        shown = ", ".join(list(dict.fromkeys(f.contig for f in features))[:3])
        raise InputError(f"no annotated feature lies on a genome contig (annotation contigs: {shown}...; genome: "
                         f"{', '.join(list(contigs)[:3])}...)", path=path, kind="no_matching_contig")
    if warn and stats.unknown_contigs:
        n = sum(stats.unknown_contigs.values())
        warnings.warn(f"{path or 'annotation'}: {n} features on {len(stats.unknown_contigs)} contigs the genome lacks "
                      f"(e.g. {next(iter(stats.unknown_contigs))}) were skipped", stacklevel=2)
    if warn and first_clip is not None:
        where = f", line {first_clip.line}" if first_clip.line else ""
        warnings.warn(f"{path or 'annotation'}{where}: {stats.clipped} features extend past their contig's end "
                      f"(first: {first_clip.contig}:{first_clip.start + 1}-{first_clip.end}, contig length "
                      f"{contigs[first_clip.contig]}); clipped", stacklevel=2)
    counts = np.zeros(scheme.num_classes, dtype=np.int64)
    for arr in labels.values():
        counts += np.bincount(arr.reshape(-1), minlength=scheme.num_classes)[: scheme.num_classes]
    stats.labelled_bases = {c: int(n) for c, n in zip(scheme.classes, counts)}
    return labels, stats


def _class_of(f: Feature, scheme: ClassScheme) -> str:
    cls = scheme.type_map.get(f.type)
    return CODON_CLASSES[0] if cls == CODING else (cls or "")


def _codon_labels(f: Feature, start: int, end: int, strand: str, cds_ids: tuple[int, ...]) -> np.ndarray:
    """Codon-position label ids of ``[start, end)`` (already clipped) of a CDS on ``strand``."""
    phase = f.phase or 0
    pos = np.arange(start, end, dtype=np.int64)
    offset = (pos - f.start - phase) if strand == "+" else (f.end - 1 - pos - phase)
    return np.asarray(cds_ids, dtype=np.uint8)[offset % 3]
