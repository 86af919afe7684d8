"""Property-based sweeps of the annotation readers: GFF3 (with and without ##FASTA), GenBank,
BED intervals as features and bigWig signal.

Each sweep generates the true content, writes it under many layouts (line endings, comments,
escapes, wrapping), reads it back and compares; damaged inputs must stop with an InputError that
names the file and the line (or record), never another exception and never a wrong result.
"""

from __future__ import annotations

import gzip
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genoseq.annotation import (BigWigSignal, Feature, class_scheme, label_bases, read_annotation, read_bed_features,
                                read_genbank, read_gff3)
from genoseq.errors import InputError
from genoseq.fasta import iter_fasta

SWEEP = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@contextmanager
def written(name: str, data: bytes):
    """A file ``name`` holding ``data`` in a fresh folder, removed afterwards."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        yield path


def assert_input_error(read, path: Path, *, line: int | None = None, record: str | None = None, reason: str = ""):
    """``read(path)`` stops with an InputError naming ``path`` and the line or record."""
    with pytest.raises(InputError) as err:
        read(path)
    assert err.value.path == str(path) and reason in err.value.reason, str(err.value)
    if line is not None:
        assert err.value.line == line, str(err.value)
    if record is not None:
        assert err.value.record == record, str(err.value)


def join_lines(lines: list[str], ending: str, final_newline: bool = True) -> str:
    ends = ["\n", "\r\n"] if ending == "mixed" else [ending]
    text = "".join(line + ends[i % len(ends)] for i, line in enumerate(lines))
    return text if final_newline else text.rstrip("\r\n")


# ----------------------------------------------------------------------------- GFF3
def escape(text: str, special: str = "", utf8_raw: bool = True) -> str:
    """GFF3 percent-escaping: ``%``, tab, newline, CR and control characters in every column,
    ``special`` too (``;=&,`` in the attributes); non-ASCII as raw UTF-8 or as escaped bytes."""
    out = []
    for ch in text:
        if ch in special or ch in "%\t\n\r" or ord(ch) < 32 or ord(ch) == 127:
            out.append(f"%{ord(ch):02X}")
        elif not ch.isascii() and not utf8_raw:
            out.append("".join(f"%{b:02X}" for b in ch.encode()))
        else:
            out.append(ch)
    return "".join(out)


_value = (st.text(st.sampled_from(list("abcXYZ0189 -_.:()/|'+*!?[]") + list(";=&,%\t") + ["é", "β", "中", "–"]),
                  min_size=1, max_size=10)
          .map(lambda s: s.strip(" ")).filter(bool))  # gffutils strips unescaped spaces at a line's end
_gff_feature = st.fixed_dictionaries({
    "contig": st.integers(0, 3),  # an index past the contigs: a seqid the ##FASTA section lacks
    "start": st.integers(1, 400),  # often past the end of a (short) contig
    "length": st.integers(1, 80),  # start == end is one base
    "strand": st.sampled_from("+-.?"),
    "type": st.sampled_from(["CDS", "tRNA", "rRNA", "gene", "ncRNA", "SO:0000316", "five prime UTR", "odd%type"]),
    "phase": st.integers(0, 2),
    "score": st.one_of(st.none(), st.integers(-8000, 8000).map(lambda i: i / 8)),
    "attrs": st.lists(st.tuples(st.sampled_from(["ID", "Name", "gene", "locus_tag", "product", "Note"]),
                                st.lists(_value, min_size=1, max_size=2)), max_size=4, unique_by=lambda kv: kv[0]),
    "utf8_raw": st.booleans(),
})


def gff_layouts(min_features: int = 0):
    return st.fixed_dictionaries({
        "contigs": st.lists(st.tuples(st.text(st.sampled_from(list("abcXYZ019._|-#;=,%") + ["é", "β"]), min_size=1,
                                              max_size=8),
                                      st.text("ACGTNacgtn", min_size=1, max_size=300)),
                            min_size=1, max_size=3, unique_by=lambda c: c[0]),
        "features": st.lists(_gff_feature, min_size=min_features, max_size=8),
        "fasta": st.booleans(),
        "header": st.booleans(),  # without directives the format is known from the feature lines
        "source": st.sampled_from(["Prokka", ".", "2", "GeneMark.hmm 3"]),
        "ending": st.sampled_from(["\n", "\r\n", "\r", "mixed"]),
        "final_newline": st.booleans(),
        "comment_every": st.integers(0, 3),
        "separator": st.sampled_from([";", "; "]),
        "trailing_separator": st.booleans(),
        "width": st.integers(1, 80),
    })


UNLISTED = "unlisted_contig"  # longer than any generated contig name


def as_read(name: str) -> str:
    """A contig name as the FASTA readers give it (bytes past ASCII as surrogates), raw or escaped in GFF3."""
    return name.encode().decode("ascii", "surrogateescape")


def render_gff3(layout) -> tuple[list[str], list[Feature], dict[str, str]]:
    """The lines of a GFF3 file, the features it means (with their lines) and its sequences."""
    contigs = layout["contigs"]
    lines = ["##gff-version 3"] + [f"##sequence-region {escape(name, ';=,#')} 1 {len(seq)}" for name, seq in contigs]
    lines = lines if layout["header"] else []
    truth = []
    for k, f in enumerate(layout["features"]):
        if layout["comment_every"] and k % layout["comment_every"] == 0:
            lines.append(["# a comment; with = signs", "###", "", "#!processor genoseq"][k % 4])
        contig = contigs[f["contig"]][0] if f["contig"] < len(contigs) else UNLISTED
        end = f["start"] + f["length"] - 1
        cds = f["type"] == "CDS"
        attrs = dict(f["attrs"])
        column9 = layout["separator"].join(
            f"{key}={','.join(escape(v, ';=&,', f['utf8_raw']) for v in values)}" for key, values in f["attrs"])
        column9 = (column9 + (";" if layout["trailing_separator"] else "")) if column9 else "."
        score = "." if f["score"] is None else repr(f["score"])
        lines.append("\t".join([escape(contig, ";=,#", f["utf8_raw"]), layout["source"], escape(f["type"]), str(f["start"]),
                                str(end), score, f["strand"], str(f["phase"]) if cds else ".", column9]))
        name = next((",".join(attrs[key]) for key in ("Name", "gene", "locus_tag") if key in attrs), None)
        product, ident = (",".join(attrs[key]) if key in attrs else None for key in ("product", "ID"))
        truth.append(Feature(as_read(contig), f["start"] - 1, end, f["strand"].replace("?", "."), f["type"], name=name,
                             product=product, id=ident, phase=f["phase"] if cds else None, score=f["score"],
                             line=len(lines)))
    sequences = {}
    if layout["fasta"]:
        lines.append("##FASTA")
        width = layout["width"]
        for name, seq in contigs:
            lines += [f">{name} contig of the sweep"] + [seq[i:i + width] for i in range(0, len(seq), width)]
        sequences = {as_read(name): seq for name, seq in contigs}
    return lines, truth, sequences


@settings(max_examples=80, **SWEEP)
@given(layout=gff_layouts())
def test_gff3_reads_the_true_features_and_sequences_under_any_layout(layout):
    lines, truth, sequences = render_gff3(layout)
    data = join_lines(lines, layout["ending"], layout["final_newline"]).encode()
    with written("sweep.gff3", data) as path:
        ann = read_gff3(path)
        assert ann.features == truth
        assert ann.sequences == sequences
        if layout["header"] or truth or sequences:
            assert read_annotation(path).features == truth  # found by its content
        else:  # an empty file, or comments only
            assert_input_error(read_annotation, path, reason="not a GFF3, GenBank or BED file")
    fasta = "".join(f">{name}\n{seq}\n" for name, seq in layout["contigs"]).encode()
    with written("genome.fa", fasta) as path:  # the same contigs as a genome FASTA: the features lie on them
        genome = {record.name for record in iter_fasta(path)}
    assert {f.contig for f in truth} - {UNLISTED} <= genome


# One damage per file, at one feature line: each is an InputError naming that line.
_BAD_COORDINATES = ["1.5", "1e3", "x", "", "1_0", "+5", "-3", "0", " 7", "\u0661", "."]
_DAMAGE = {
    "eight_columns": lambda cols, v: cols[:8],
    "ten_columns": lambda cols, v: cols + ["extra"],
    "spaces_for_tabs": lambda cols, v: [" ".join(cols)],
    "start": lambda cols, v: cols[:3] + [v] + cols[4:],
    "end": lambda cols, v: cols[:4] + [v] + cols[5:],
    "reversed": lambda cols, v: cols[:3] + [str(int(cols[4]) + 1 + len(v)), cols[3]] + cols[5:],
    "strand": lambda cols, v: cols[:6] + ["plus"] + cols[7:],
    "phase": lambda cols, v: cols[:7] + ["3"] + cols[8:],
    "score": lambda cols, v: cols[:5] + ["high"] + cols[6:],
    "empty_seqid": lambda cols, v: [""] + cols[1:],
    "empty_type": lambda cols, v: cols[:2] + [""] + cols[3:],
    "latin1": lambda cols, v: cols[:8] + [cols[8] + ";Note=caf\udce9"],  # the byte 0xE9, not UTF-8
}


@settings(max_examples=60, **SWEEP)
@given(layout=gff_layouts(min_features=1), damage=st.sampled_from(sorted(_DAMAGE)), value=st.sampled_from(_BAD_COORDINATES),
       which=st.integers(0, 7))
def test_gff3_damaged_line_is_an_input_error_naming_it(layout, damage, value, which):
    lines, truth, _ = render_gff3(layout)
    line_no = truth[which % len(truth)].line
    lines[line_no - 1] = "\t".join(_DAMAGE[damage](lines[line_no - 1].split("\t"), value))
    data = join_lines(lines, layout["ending"]).encode("utf-8", "surrogateescape")
    with written("damaged.gff3", data) as path:
        assert_input_error(read_gff3, path, line=line_no)
        assert_input_error(read_annotation, path, line=line_no)


GFF_FEATURE = "ctg1\tProkka\tCDS\t2\t7\t.\t+\t0\tID=a"
FASTA_SECTION_CASES = {
    "no_header": (["##FASTA", "ACGT"], "does not start with a '>' header", None, 4),
    "twice": (["##FASTA", ">ctg1", "ACGT", ">ctg1", "GG"], "appears twice", "ctg1", None),
    "empty_record": (["##FASTA", ">ctg1", ">ctg2", "ACGT"], "has no sequence", "ctg1", None),
    "nameless": (["##FASTA", ">", "ACGT"], "has no name", None, None),
    "bad_base": (["##FASTA", ">ctg1", "AC*T"], "invalid character '*'", "ctg1", None),
}


@pytest.mark.parametrize("case", sorted(FASTA_SECTION_CASES))
def test_gff3_fasta_section_errors_name_file_and_record(case):
    lines, reason, record, line = FASTA_SECTION_CASES[case]
    with written(f"{case}.gff3", join_lines(["##gff-version 3", GFF_FEATURE] + lines, "\n").encode()) as path:
        assert_input_error(read_gff3, path, line=line, record=record, reason=reason)


def test_gff3_blank_lines_in_the_fasta_section_are_read_through():
    text = join_lines(["##gff-version 3", GFF_FEATURE, "##FASTA", "", ">ctg1 x", "ACGT", "", "AC", "", ">ctg2", "G"],
                      "\r\n")
    with written("blank.gff3", text.encode()) as path:
        assert read_gff3(path).sequences == {"ctg1": "ACGTAC", "ctg2": "G"}


def test_gff3_features_off_their_contig_or_on_an_unlisted_one_are_kept_then_clipped_or_skipped_with_a_warning():
    lines = ["##gff-version 3", "ctg1\tx\tCDS\t3\t8\t.\t+\t0\tID=in", "ctg1\tx\ttRNA\t5\t40\t.\t-\t.\tID=off_end",
             "ctg9\tx\tCDS\t1\t6\t.\t+\t0\tID=unlisted", "##FASTA", ">ctg1", "ACGTACGTAC"]
    with written("edges.gff3", join_lines(lines, "\n").encode()) as path:
        ann = read_gff3(path)
        assert [(f.contig, f.start, f.end, f.line) for f in ann.features] == [
            ("ctg1", 2, 8, 2), ("ctg1", 4, 40, 3), ("ctg9", 0, 6, 4)]  # as written
        genome = ann.genome()
        with pytest.warns(UserWarning) as caught:
            labels, stats = label_bases(ann.features, genome.contigs, class_scheme(ann.features), path=str(path))
    messages = " ".join(str(w.message) for w in caught)
    assert f"{path}, line 3: 1 features extend past their contig's end (first: ctg1:5-40, contig length 10)" in messages
    assert "contigs the genome lacks (e.g. ctg9)" in messages
    assert stats.clipped == 1 and stats.unknown_contigs == {"ctg9": 1} and labels["ctg1"].shape == (2, 10)


@pytest.fixture(scope="module")
def prokka(data_dir, tmp_path_factory) -> tuple[list[str], list[Feature]]:
    """The header and first 150 feature lines of the real Prokka GFF3 (products with escaped
    commas among them), and their features as read from the file as written."""
    with gzip.open(data_dir / "ecoli_draft_prokka.gff3.gz", "rt") as handle:
        lines = [line.rstrip("\n") for line in handle if not line.startswith("##sequence-region")][:151]
    path = tmp_path_factory.mktemp("prokka") / "slice.gff3"
    path.write_text(join_lines(lines, "\n"))
    features = read_gff3(path).features
    assert len(features) == 150 and sum("," in (f.product or "") for f in features) >= 2
    return lines, features


def re_escape(column9: str, more: str) -> str:
    """Column 9 with every value decoded and escaped again, ``more`` characters escaped too."""
    pairs = (kv.split("=", 1) for kv in column9.split(";"))
    return ";".join(f"{key}=" + ",".join(escape(unquote(v), ";=&," + more) for v in values.split(","))
                    for key, values in pairs)


@settings(max_examples=12, **SWEEP)
@given(ending=st.sampled_from(["\n", "\r\n", "mixed"]), comment_every=st.integers(0, 7),
       escape_more=st.sampled_from(["", " ", ":-.()/", "abcdefghijklmnopqrstuvwxyz0123456789"]))
def test_real_prokka_gff3_reads_the_same_re_escaped_and_re_laid_out(prokka, ending, comment_every, escape_more):
    """Escaping more characters than GFF3 must (any may be escaped), CRLF and comments between the
    lines leave the real annotation's features as they are."""
    original, expected = prokka
    lines = []
    for k, line in enumerate(original):
        if comment_every and k % comment_every == 0:
            lines.append("# a comment")
        if not line.startswith("#"):
            cols = line.split("\t")
            line = "\t".join(cols[:8] + [re_escape(cols[8], escape_more)])
        lines.append(line)
    with written("prokka.gff3", join_lines(lines, ending).encode()) as path:
        got = read_gff3(path).features
    assert [f.__dict__ | {"line": None} for f in got] == [f.__dict__ | {"line": None} for f in expected]


# ----------------------------------------------------------------------------- GenBank
_gb_feature = st.fixed_dictionaries({
    "type": st.sampled_from(["CDS", "gene", "tRNA", "misc_feature"]),
    "parts": st.lists(st.tuples(st.integers(1, 400), st.integers(0, 60)), min_size=1, max_size=3),  # start, length - 1
    "strand": st.sampled_from(["+", "complement(join(...))", "join(complement(...))"]),
    "fuzzy": st.tuples(st.booleans(), st.booleans()),  # <start of the first part, >end of the last
    "codon_start": st.integers(1, 3),
    "gene": st.one_of(st.none(), st.from_regex(r"[a-z]{3}[A-Z]?", fullmatch=True)),
    "locus_tag": st.one_of(st.none(), st.from_regex(r"TAG_[0-9]{1,4}", fullmatch=True)),
    "product": st.one_of(st.none(), st.from_regex(r"[A-Za-z][A-Za-z0-9 ,()/-]{0,30}[a-z]", fullmatch=True)),
})
_gb_records = st.lists(st.tuples(st.from_regex(r"[A-Z][A-Z0-9_]{0,9}", fullmatch=True),
                                 st.text("acgtn", min_size=1, max_size=300), st.lists(_gb_feature, max_size=5)),
                       min_size=1, max_size=3, unique_by=lambda r: r[0])


def genbank_location(f) -> str:
    """A feature's location as GenBank writes it: ranges, single bases, fuzzy ends, join and complement."""
    ranges = []
    for i, (start, extra) in enumerate(f["parts"]):
        lt = "<" if f["fuzzy"][0] and i == 0 else ""
        gt = ">" if f["fuzzy"][1] and i == len(f["parts"]) - 1 else ""
        ranges.append(f"{lt}{start}..{gt}{start + extra}" if extra or lt or gt else str(start))
    if f["strand"] == "join(complement(...))":
        ranges = [f"complement({r})" for r in ranges]
    location = ranges[0] if len(ranges) == 1 else f"join({','.join(ranges)})"
    return f"complement({location})" if f["strand"] == "complement(join(...))" else location


def genbank_features(f, contig: str) -> list[Feature]:
    """The parts of a generated feature in reading order, with their CDS phases."""
    minus = f["strand"] != "+"
    parts = list(reversed(f["parts"])) if f["strand"] == "complement(join(...))" else f["parts"]
    out, done = [], 0
    for start, extra in parts:
        phase = (f["codon_start"] - 1 - done) % 3 if f["type"] == "CDS" else None
        out.append(Feature(contig, start - 1, start + extra, "-" if minus else "+", f["type"],
                           name=f["gene"] or f["locus_tag"], product=f["product"], id=f["locus_tag"], phase=phase))
        done += extra + 1
    return out


def render_genbank(records) -> tuple[list[str], list[Feature], dict[str, str]]:
    lines, truth, sequences = [], [], {}
    for name, seq, features in records:
        lines += [f"LOCUS       {name:<16} {len(seq):>11} bp    DNA     linear   UNK 01-JAN-1980",
                  "DEFINITION  a record of the sweep.", f"ACCESSION   {name}", f"VERSION     {name}.1",
                  "KEYWORDS    .", "SOURCE      .", "  ORGANISM  .", "            .",
                  "FEATURES             Location/Qualifiers", f"     source          1..{len(seq)}"]
        for f in features:
            lines.append(f"     {f['type']:<16}{genbank_location(f)}")
            qualifiers = {"gene": f["gene"], "locus_tag": f["locus_tag"], "product": f["product"],
                          "codon_start": f["codon_start"] if f["type"] == "CDS" else None}
            lines += [f"                     /{key}=" + (f'"{value}"' if isinstance(value, str) else str(value))
                      for key, value in qualifiers.items() if value is not None]
            truth += genbank_features(f, f"{name}.1")
        lines.append("ORIGIN")
        for i in range(0, len(seq), 60):
            lines.append(f"{i + 1:>9} " + " ".join(seq[j:j + 10] for j in range(i, min(i + 60, len(seq)), 10)))
        lines.append("//")
        sequences[f"{name}.1"] = seq.upper()
    return lines, truth, sequences


@settings(max_examples=50, **SWEEP)
@given(records=_gb_records, ending=st.sampled_from(["\n", "\r\n", "mixed"]))
def test_genbank_reads_the_true_parts_phases_and_sequences(records, ending):
    lines, truth, sequences = render_genbank(records)
    with written("sweep.gb", join_lines(lines, ending).encode()) as path:
        ann = read_genbank(path)
        assert ann.features == truth
        assert ann.sequences == sequences
        assert read_annotation(path).features == truth


@settings(max_examples=40, **SWEEP)
@given(records=_gb_records, cut=st.floats(0, 1))
def test_genbank_cut_short_reads_its_whole_records_or_stops(records, cut):
    """A file cut anywhere gives the records before the cut or an InputError naming the file."""
    lines, _, _ = render_genbank(records)
    text = join_lines(lines, "\n")
    data = text[: int(cut * len(text))]
    whole = data.count("//\n") + data.endswith("//")
    with written("cut.gb", data.encode()) as path, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Biopython's warnings about the cut line
        try:
            ann = read_genbank(path)
        except InputError as err:
            assert err.path == str(path)
            return
    _, truth, sequences = render_genbank(records[:whole])
    assert (ann.features, ann.sequences) == (truth, sequences)


def _gb_record(name: str, location: str, qualifier: str = '/gene="g"') -> list[str]:
    feature = {"type": "CDS", "parts": [(1, 9)], "strand": "+", "fuzzy": (False, False), "codon_start": 1,
               "gene": "g", "locus_tag": None, "product": None}
    lines, _, _ = render_genbank([(name, "acgt" * 30, [feature])])
    at = next(i for i, line in enumerate(lines) if line.startswith("     CDS"))
    return lines[:at] + [f"     CDS             {location}", f"                     {qualifier}"] + lines[at + 3:]


GENBANK_CASES = {
    "reversed_range": (_gb_record("REC1", "50..10"), "cannot read the location of a CDS", "REC1.1"),
    "bad_location": (_gb_record("REC1", "join(1..10,20..x)"), "cannot read the location", "REC1.1"),
    "bad_codon_start": (_gb_record("REC1", "1..30", "/codon_start=4"), "codon_start '4' of a CDS", "REC1.1"),
    "same_name_twice": (_gb_record("REC1", "1..30") + _gb_record("REC1", "5..9"), "two records have this name", "REC1.1"),
    "no_record": (["just text"], "no GenBank records", None),
}


@pytest.mark.parametrize("case", sorted(GENBANK_CASES))
def test_malformed_genbank_names_file_and_record(case):
    lines, reason, record = GENBANK_CASES[case]
    with written(f"{case}.gb", join_lines(lines, "\n").encode()) as path, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Biopython's own warning about the location
        assert_input_error(read_genbank, path, record=record, reason=reason)


def test_genbank_join_with_a_part_on_another_record_puts_that_part_on_its_contig():
    with written("remote.gb", join_lines(_gb_record("REC1", "join(1..10,X99.1:20..40)"), "\n").encode()) as path:
        assert [(f.contig, f.start, f.end, f.phase) for f in read_genbank(path).features] == [
            ("REC1.1", 0, 10, 0), ("X99.1", 19, 40, 2)]


def test_real_prokka_features_written_as_genbank_by_biopython_read_back_the_same(prokka, tmp_path):
    """Biopython's own GenBank writer (wrapped qualifiers, complement locations) on the real annotation."""
    from Bio import SeqIO
    from Bio.Seq import Seq
    from Bio.SeqFeature import SeqFeature, SimpleLocation
    from Bio.SeqRecord import SeqRecord

    _, expected = prokka
    records = {}
    for f in expected:
        record = records.setdefault(f.contig, SeqRecord(Seq(""), id=f.contig, annotations={"molecule_type": "DNA"}))
        record.seq = Seq("n" * max(len(record.seq), f.end))
        qualifiers = {"locus_tag": [f.id], "product": [f.product] if f.product else [],
                      "codon_start": [f.phase + 1] if f.phase is not None else []}
        record.features.append(SeqFeature(SimpleLocation(f.start, f.end, {"+": 1, "-": -1}.get(f.strand)), f.type,
                                          qualifiers={k: v for k, v in qualifiers.items() if v}))
    SeqIO.write(list(records.values()), tmp_path / "prokka.gb", "genbank")
    got = read_genbank(tmp_path / "prokka.gb").features

    def key(f: Feature):  # the writer cuts a word longer than a line, and GenBank joins lines with a space
        return f.contig, f.start, f.end, f.strand, f.type, f.id, (f.product or "").replace(" ", ""), f.phase

    assert [key(f) for f in got] == [key(f) for f in expected]


# ----------------------------------------------------------------------------- BED as features
_bed_row = st.fixed_dictionaries({
    "contig": st.sampled_from(["chr1", "NC_000913.3", "track_7", "browser2", "ctg 9"]),
    "start": st.integers(0, 10**7),
    "length": st.integers(0, 500),
    "columns": st.integers(3, 12),
    "name": st.sampled_from([".", "geneA", "a gene", "tRNA-Leu", "#1", "7"]),
    "score": st.one_of(st.just("."), st.integers(0, 1000).map(str), st.just("2.5")),
    "strand": st.sampled_from("+-."),
})
_BED_DAMAGE = {"start": "1_0", "end": "+5", "negative": "-4", "reversed": None, "strand": "plus", "score": "high"}


def render_bed(rows) -> tuple[list[str], list[Feature]]:
    lines, truth = ["browser position chr1:1-100", 'track name="sweep"', "# a comment"], []
    for row in rows:
        end = row["start"] + row["length"]
        cols = [row["contig"], str(row["start"]), str(end), row["name"], row["score"], row["strand"],
                str(row["start"]), str(end), "255,0,0", "2", "10,20,", "0,30,"][: row["columns"]]
        lines.append("\t".join(cols))
        name = cols[3] if len(cols) > 3 and cols[3] != "." else None
        score = float(cols[4]) if len(cols) > 4 and cols[4] != "." else None
        strand = cols[5] if len(cols) > 5 else "."
        truth.append(Feature(row["contig"], row["start"], end, strand, name or "feature", name=name, score=score,
                             extra=tuple(cols[6:])))
    return lines, truth


@settings(max_examples=50, **SWEEP)
@given(rows=st.lists(_bed_row, min_size=1, max_size=6), ending=st.sampled_from(["\n", "\r\n", "\r", "mixed"]),
       header=st.integers(0, 3), damage=st.one_of(st.none(), st.sampled_from(sorted(_BED_DAMAGE))), which=st.integers(0, 5))
def test_bed_features_read_true_or_stop_at_the_damaged_line(rows, ending, header, damage, which):
    """BED3 to BED12 lines (contigs called track_7 or browser2 among them) under any layout read as
    the features they mean; one damaged column is an InputError naming its line and interval."""
    lines, truth = render_bed(rows)
    lines = lines[3 - header:]  # none to all of the browser, track and comment lines
    if damage is not None:
        at = len(lines) - len(rows) + which % len(rows)
        cols = lines[at].split("\t")
        if damage == "reversed":
            cols[1], cols[2] = str(int(cols[2]) + 1), cols[1]
        else:
            column = {"start": 1, "end": 2, "negative": 1, "strand": 5, "score": 4}[damage]
            cols = (cols + ["x", "0", "+"])[: max(len(cols), column + 1)]  # the damaged column exists
            cols[column] = _BED_DAMAGE[damage]
        lines[at] = "\t".join(cols)
    with written("sweep.bed", join_lines(lines, ending).encode()) as path:
        for read in (read_bed_features, read_annotation):
            if damage is None:
                assert read(path).features == truth
            else:
                record = cols[3] if len(cols) > 3 and cols[3] != "." else cols[0]
                assert_input_error(read, path, line=at + 1, record=record)


# ----------------------------------------------------------------------------- bigWig
_track = st.lists(st.tuples(st.integers(1, 3000),  # contig size, then runs of (length, value or no data)
                            st.lists(st.tuples(st.integers(1, 400), st.one_of(st.none(), st.floats(-1e6, 1e6, width=32))),
                                     max_size=12)),
                  min_size=1, max_size=3)


def write_bigwig(path: Path, track, zooms: int = 0) -> dict[str, np.ndarray]:
    """Write ``track`` with pyBigWig; the per-base values it holds (NaN where no interval is)."""
    import pyBigWig

    truth = {}
    bw = pyBigWig.open(str(path), "w")
    bw.addHeader([(f"chr{i}", size) for i, (size, _) in enumerate(track)], maxZooms=zooms)
    for i, (size, runs) in enumerate(track):
        values = np.full(size, np.nan, dtype=np.float32)
        starts, ends, pos = [], [], 0
        for length, value in runs:
            if pos < size and value is not None:
                starts.append(pos)
                ends.append(min(pos + length, size))
                values[pos:ends[-1]] = value
            pos += length
        if starts:
            bw.addEntries([f"chr{i}"] * len(starts), starts, ends=ends, values=[float(values[s]) for s in starts])
        truth[f"chr{i}"] = values
    bw.close()
    return truth


@settings(max_examples=40, **SWEEP)
@given(track=_track, zooms=st.sampled_from([0, 2]), missing=st.sampled_from([0.0, -1.0, float("nan")]),
       window=st.tuples(st.integers(0, 3500), st.integers(0, 600)), cut=st.integers(1, 10**6))
def test_bigwig_reads_back_the_written_track_and_a_cut_copy_stops(track, zooms, missing, window, cut):
    import pickle

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "track.bw"
        truth = write_bigwig(path, track, zooms)
        signal = BigWigSignal(path, missing=missing)
        assert signal.chroms == {name: len(values) for name, values in truth.items()}
        clone = pickle.loads(pickle.dumps(signal))  # reopens its file
        for name, values in truth.items():
            expected = np.where(np.isnan(values), np.float32(missing), values)
            np.testing.assert_array_equal(signal.values(name, 0, len(values)), expected)
            start, size = window  # may run past the contig's end: no data there
            inside = expected[start:start + size]
            want = np.concatenate([inside, np.full(size - len(inside), missing, dtype=np.float32)])
            np.testing.assert_array_equal(clone.values(name, start, start + size), want)
        np.testing.assert_array_equal(signal.values("chrUn", 5, 9), np.full(4, missing, dtype=np.float32))
        data = path.read_bytes()
        cut_path = Path(tmp) / "cut.bw"
        cut_path.write_bytes(data[: cut % len(data)])  # libBigWig would read past the end of this one
        assert_input_error(BigWigSignal, cut_path, reason="truncated" if cut % len(data) >= 4 else "not a bigWig")


def test_bigwig_damaged_header_or_data_block_text_and_empty_files_stop_with_an_input_error(tmp_path):
    import struct

    path = tmp_path / "track.bw"
    write_bigwig(path, [(50_000, [(7, float(i)) if i % 2 else (3, None) for i in range(4000)])], zooms=2)
    data = bytearray(path.read_bytes())
    for at, value in ((6, struct.pack("<H", 300)), (24, struct.pack("<Q", len(data) + 8))):  # zoom levels, index
        header = tmp_path / f"header_{at}.bw"  # libBigWig would read zoom headers or an index past the file
        header.write_bytes(bytes(data[:at] + value + data[at + len(value):]))
        assert_input_error(BigWigSignal, header, reason="a damaged bigWig header")
    data_offset = struct.unpack_from("<Q", data, 16)[0]  # fullDataOffset in the 64-byte header
    data[data_offset + 64:data_offset + 96] = bytes(32)  # inside the first zlib-compressed block
    damaged = tmp_path / "damaged.bw"
    damaged.write_bytes(bytes(data))
    signal = BigWigSignal(damaged)  # the header and index are whole
    with pytest.raises(InputError) as err:
        signal.values("chr0", 0, 50_000)
    assert err.value.path == str(damaged) and err.value.record == "chr0"
    (tmp_path / "text.bw").write_text("track type=bedGraph\nchr0\t0\t10\t1.5\n")
    (tmp_path / "empty.bw").write_bytes(b"")
    for name in ("text.bw", "empty.bw"):
        assert_input_error(BigWigSignal, tmp_path / name, reason="not a bigWig file")


def test_bigwig_lacking_genome_contigs_warns_or_stops(tmp_path):
    path = tmp_path / "track.bw"
    write_bigwig(path, [(100, [(10, 1.5)]), (50, [])])
    with pytest.warns(UserWarning, match="1 of 2 genome contigs have no bigWig data"):
        assert BigWigSignal(path, contigs={"chr0": 100, "chrX": 10}).absent == ["chrX"]
    assert_input_error(lambda p: BigWigSignal(p, contigs={"chrX": 10}), path, reason="none of the genome's contigs")


# ----------------------------------------------------------------------------- the command line
def test_annotate_fit_on_a_bad_gff3_exits_2_naming_file_and_line_and_writes_nothing(tmp_path, tiny_lm, capsys):
    from genoseq.cli import main

    tiny_lm().save_pretrained(tmp_path / "lm")
    bad = tmp_path / "bad.gff3"
    bad.write_text(join_lines(["##gff-version 3", GFF_FEATURE, "ctg1\tProkka\tCDS\t1_0\t30\t.\t+\t0\tID=b", "##FASTA",
                               ">ctg1", "ACGT" * 20], "\r\n"))
    before = sorted(tmp_path.iterdir())
    assert main(["annotate", "fit", "--model", str(tmp_path / "lm"), "--annotation", str(bad),
                 "--out", str(tmp_path / "seg"), "--progress", "none"]) == 2
    assert f"{bad}, line 3: start '1_0' must be an integer >= 1" in capsys.readouterr().err
    assert sorted(tmp_path.iterdir()) == before
