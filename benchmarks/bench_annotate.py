"""Per-base genome annotation on held-out contigs: genoseq's segmenter against ORF calling, an
order-k Markov model per class, and Prodigal. Prints JSON (and writes it with ``--out``).

Whole contigs are held out: a seeded random order of the contigs, taken until at least
``--holdout`` of the bases (``genoseq.tasks.genome_annotation.choose_holdout``). The segmenter is
fitted on the other contigs (``genoseq annotate fit``, probe mode, the defaults apart from
``--max_train_bases``/``--epochs``, which bound the CPU time), then scored on the held-out ones
with the same metrics as every baseline:

* per-base CDS precision / recall / F1 / MCC over (base, strand) pairs, and with a base coding
  when either strand is (``CDS_any_strand``); the share of coding bases is printed beside them,
  since labelling every base coding already reaches that precision;
* CDS start/stop exact-match rates of the predicted genes, tRNA recall (feature and base).

Baselines: ``orf`` (longest ATG..stop ORFs >= 300 nt on both strands, taken longest first
without overlap), ``markov`` (order-k chains of coding sequence on its own strand and of
intergenic sequence, trained on the training contigs; a base is coding on the strand whose
smoothed log-likelihood wins; runs snapped to ORFs as the segmenter's are) and ``prodigal``
(run on the held-out contigs; skipped with a note when the program is absent). Prodigal made
the CDS calls of the shared Prokka annotation, so there it agrees by construction.

    python benchmarks/bench_annotate.py --model runs/recipe/model \
        --gff ../shared/data/ecoli_draft_prokka.gff3.gz --out benchmarks/results/.../annotate.json
"""

from __future__ import annotations

import argparse
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from genoseq.runtime import print_json

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_GFF = ROOT.parent / "shared" / "data" / "ecoli_draft_prokka.gff3.gz"


def orf_calls(seq: bytes, contig: str, min_length: int = 300):
    """Longest ORFs (first ATG after the previous in-frame stop, to the stop) of both strands,
    at least ``min_length`` nt with the stop, taken longest first with no overlap."""
    from genoseq.annotation import Feature
    from genoseq.tasks.genome_annotation import STOP_CODONS

    n = len(seq)
    rc = seq[::-1].translate(bytes.maketrans(b"ACGTN", b"TGCAN"))
    candidates = []
    for strand, s in (("+", seq), ("-", rc)):
        for frame in range(3):
            begin = None
            for i in range(frame, n - 2, 3):
                codon = s[i : i + 3]
                if codon in (b"TAA", b"TAG", b"TGA"):
                    if begin is not None and i + 3 - begin >= min_length:
                        a, b = (begin, i + 3) if strand == "+" else (n - i - 3, n - begin)
                        candidates.append((i + 3 - begin, a, b, strand))
                    begin = None
                elif begin is None and codon == b"ATG":
                    begin = i
    assert STOP_CODONS == ("TAA", "TAG", "TGA")
    taken = np.zeros(n, dtype=bool)
    out = []
    for _, a, b, strand in sorted(candidates, reverse=True):
        if not taken[a:b].any():
            taken[a:b] = True
            out.append(Feature(contig, a, b, strand, "CDS", phase=0))
    return out


def markov_calls(models, seq_ids: np.ndarray, contig: str, window: int = 96, min_length: int = 90):
    """Per-base labels (2, L) and genes of the Markov per-class baseline on one contig."""
    from genoseq.annotation import Feature
    from genoseq.tokenizer import Tokenizer
    from genoseq.tasks.genome_annotation import mask_runs, snap_gene, unique_genes

    tok = Tokenizer()
    coding, noncoding = models
    n = len(seq_ids)
    k = coding.k

    def per_base(model, ids):
        lp = np.zeros(len(ids))
        got = model.log2_probs(ids)  # positions k.. whose k+1-mer has no N (none skipped in ACGT runs)
        lp[k : k + len(got)] = got[: len(ids) - k]
        kernel = np.ones(window) / window
        return np.convolve(lp, kernel, mode="same")

    rc_ids = tok.reverse_complement(seq_ids)
    plus, minus, nc = per_base(coding, seq_ids), per_base(coding, rc_ids)[::-1], per_base(noncoding, seq_ids)
    labels = np.zeros((2, n), dtype=np.uint8)
    cod_plus = (plus > nc) & (plus >= minus)
    cod_minus = (minus > nc) & (minus > plus)
    labels[0][cod_plus], labels[1][cod_minus] = 1, 1
    seq = tok.decode(seq_ids).encode()
    rc = tok.decode(rc_ids).encode()
    genes = []
    for s, e in mask_runs(cod_plus, 10):
        got = snap_gene(seq, s, e, None)
        if got and got[1] - got[0] >= min_length:
            genes.append(Feature(contig, got[0], got[1], "+", "CDS", phase=0))
    for s, e in mask_runs(cod_minus, 10):
        got = snap_gene(rc, n - e, n - s, None)
        if got and got[1] - got[0] >= min_length:
            genes.append(Feature(contig, n - got[1], n - got[0], "-", "CDS", phase=0))
    return labels, unique_genes(genes)


def run_prodigal(genome, names, workdir: Path):
    from genoseq.annotation import read_gff3
    from genoseq.tokenizer import Tokenizer

    exe = shutil.which("prodigal")
    if exe is None:
        return None, "prodigal not installed (Debian: apt-get install prodigal); skipped"
    tok = Tokenizer()
    fasta = workdir / "heldout.fa"
    with open(fasta, "w") as handle:
        for name in names:
            handle.write(f">{name}\n{tok.decode(genome.fetch(name, 0, genome.contigs[name]))}\n")
    gff = workdir / "prodigal.gff"
    started = time.perf_counter()
    subprocess.run([exe, "-i", str(fasta), "-f", "gff", "-o", str(gff), "-p", "single", "-q"], check=True)
    version = subprocess.run([exe, "-v"], capture_output=True, text=True)
    note = (version.stderr or version.stdout).strip().splitlines()[-1] if (version.stderr or version.stdout) else "prodigal"
    return read_gff3(gff).features, f"{note}; -p single on the held-out contigs, {time.perf_counter() - started:.1f} s"


def summarize(per_base: dict, features: dict) -> dict:
    cds, anyc = per_base.get("CDS", {}), per_base.get("CDS_any_strand", {})
    trna = per_base.get("tRNA", {})
    return {"cds_precision": cds.get("precision"), "cds_recall": cds.get("recall"), "cds_f1": cds.get("f1"),
            "cds_mcc": cds.get("mcc"), "cds_any_strand_f1": anyc.get("f1"), "cds_any_strand_mcc": anyc.get("mcc"),
            "stop_exact": features["CDS"]["stop_exact"], "start_stop_exact": features["CDS"]["start_stop_exact"],
            "true_stop_found": features["CDS"]["true_stop_found"], "genes": features["CDS"]["predicted"],
            "trna_recall": (features.get("tRNA") or {}).get("recall"), "trna_base_recall": trna.get("recall")}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "runs" / "recipe" / "model"))
    parser.add_argument("--gff", default=str(DEFAULT_GFF), help="annotation: GFF3 (its ##FASTA is the genome), GenBank")
    parser.add_argument("--genome", default=None, help="FASTA when the annotation carries no sequence")
    parser.add_argument("--holdout", type=float, default=0.2, help="share of the bases held out as whole contigs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max_train_bases", type=int, default=1_500_000, help="CPU bound on the bases featurised")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--markov_k", type=int, default=5)
    parser.add_argument("--segmenter", default=None, help="reuse a fitted segmenter folder instead of fitting")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    import torch

    from genoseq.annotation import ClassScheme, label_bases, read_annotated_genome
    from genoseq.markov import MarkovModel
    from genoseq.models.segmenter import Segmenter
    from genoseq.pipelines.annotate import fit
    from genoseq.tasks.annotation_metrics import evaluate_contigs
    from genoseq.tasks.genome_annotation import choose_holdout
    from genoseq.tasks.annotation_metrics import base_metrics, feature_metrics, features_to_labels
    from genoseq.tokenizer import Tokenizer

    torch.set_num_threads(2)
    started = time.perf_counter()
    ann, genome = read_annotated_genome(args.gff, args.genome)
    annotated = {f.contig for f in ann.features}
    contigs = {c: n for c, n in genome.contigs.items() if c in annotated}
    held = choose_holdout(contigs, args.holdout, args.seed)
    result: dict = {"machine": f"{platform.machine()} CPU, {torch.get_num_threads()} threads (2-core x86-64)",
                    "annotation": str(args.gff), "model": args.model, "seed": args.seed,
                    "holdout": {"rule": f"seeded random whole contigs (seed {args.seed}) until >= {args.holdout:.0%} of the bases",
                                "contigs": held, "bases": int(sum(contigs[c] for c in held)),
                                "share": round(sum(contigs[c] for c in held) / sum(contigs.values()), 4)}}
    with tempfile.TemporaryDirectory(prefix="bench-annotate-") as tmp:
        tmp = Path(tmp)
        seg_dir = args.segmenter
        if seg_dir is None:
            seg_dir = str(tmp / "segmenter")
            summary = fit(args.model, args.gff, seg_dir, genome=args.genome, holdout=",".join(held),
                          max_train_bases=args.max_train_bases, epochs=args.epochs, seed=args.seed, progress="lines")
            result["fit"] = {k: summary.get(k) for k in ("train_bases", "val_bases", "epochs_run", "best_epoch",
                                                         "best_val_loss", "feature_seconds", "train_seconds", "seconds",
                                                         "class_weights", "history", "labels")}
        seg = Segmenter.from_pretrained(seg_dir)
        t0 = time.perf_counter()
        model_metrics = evaluate_contigs(seg, ann, genome, held, progress="lines")
        result["predict_seconds"] = round(time.perf_counter() - t0, 1)
        scheme = ClassScheme(tuple(seg.classes), seg.type_map)
        sub = {c: contigs[c] for c in held}
        truth, _ = label_bases(ann.features, sub, scheme, path=ann.path, warn=False)
        coding_share = float(np.mean([np.isin(truth[c], scheme.coding).any(axis=0).mean() for c in held]))
        result["coding_share_any_strand"] = round(coding_share, 4)
        result["segmenter"] = {**summarize(model_metrics["per_base"], model_metrics["features"]),
                               "genes_per_base": summarize(model_metrics["per_base_from_features"], model_metrics["features"]),
                               "full": model_metrics}

        def score(genes, labels=None):
            labels = labels if labels is not None else features_to_labels(genes, sub, scheme)
            per_base = base_metrics(truth, labels, scheme)
            return {**summarize(per_base, feature_metrics(genes, ann.features, held, type_map=scheme.type_map)),
                    "per_base": per_base}

        tok = Tokenizer()
        t0 = time.perf_counter()
        orfs = [g for c in held for g in orf_calls(tok.decode(genome.fetch(c, 0, sub[c])).encode(), c)]
        result["orf"] = {**score(orfs), "seconds": round(time.perf_counter() - t0, 1)}

        t0 = time.perf_counter()
        train_contigs = [c for c in contigs if c not in held]
        cds = [f for f in ann.features if f.type == "CDS" and f.contig in train_contigs and f.strand in "+-"]
        coding = MarkovModel(args.markov_k).fit((genome.fetch(f.contig, f.start, f.end, f.strand) for f in cds),
                                                both_strands=False)
        train_labels, _ = label_bases(ann.features, {c: contigs[c] for c in train_contigs}, scheme, warn=False)
        from genoseq.tasks.genome_annotation import mask_runs

        def intergenic():
            for c in train_contigs:
                ids = genome.fetch(c, 0, contigs[c])
                for s, e in mask_runs((train_labels[c] == 0).all(axis=0)):
                    if e - s > args.markov_k + 1:
                        yield ids[s:e]

        noncoding = MarkovModel(args.markov_k).fit(intergenic())
        mk_labels, mk_genes = {}, []
        for c in held:
            lab, genes = markov_calls((coding, noncoding), genome.fetch(c, 0, sub[c]), c)
            mk_labels[c] = np.where(lab == 1, scheme.coding[0], 0).astype(np.uint8)
            mk_genes.extend(genes)
        result["markov"] = {**score(mk_genes, mk_labels), "k": args.markov_k, "seconds": round(time.perf_counter() - t0, 1),
                            "genes_per_base": summarize(base_metrics(truth, features_to_labels(mk_genes, sub, scheme), scheme),
                                                        feature_metrics(mk_genes, ann.features, held))}

        genes, note = run_prodigal(genome, held, tmp)
        result["prodigal"] = {**score([g for g in genes if g.type == "CDS"]), "note": note} if genes is not None else {"note": note}
    result["seconds"] = round(time.perf_counter() - started, 1)
    print_json(result, args.out)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
