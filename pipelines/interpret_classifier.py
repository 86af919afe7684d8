"""``genoseq interpret attributions`` and ``genoseq interpret motifs``: classifier attributions
and the motifs they share, as files.

``attributions`` reads sequences (table, GenomicBenchmarks folder or FASTA), runs
:func:`genoseq.tasks.interpret.attribution.classifier_attributions` and writes into ``--out``:

* ``attributions.npz`` -- ``names``, ``lengths``, ``classes``, ``targets``, ``probabilities``
  (N, C), and ``onehot``, ``hypothetical``, ``contributions`` (and ``ism`` for ISM) as
  (N, L_max, 4) float32 arrays, zero past each sequence's length; loads with
  ``allow_pickle=False``;
* ``summary.tsv`` -- per sequence: name, length, label (when known), predicted, target,
  p_target, the sum of the contributions, the position and value of the largest |contribution|;
* ``logos/<k>_<name>.png`` -- the contribution logo (and ISM heatmap) of the first ``logos``
  sequences;
* ``attributions.json`` -- the settings and the completeness gap of integrated gradients.

``motifs`` reads such a folder (or its ``attributions.npz``), runs TF-MoDISco
(:func:`~genoseq.tasks.interpret.motifs.discover_motifs`), matches the motifs with TOMTOM against
``--motifs known.meme`` and/or ``--jaspar COLLECTION[:TAX_GROUP,...]`` (the JASPAR database
pyjaspar ships) when given, and writes ``motifs.tsv`` (name, sign, seqlets, consensus,
width, best match with p- and q-value), ``seqlets.tsv`` (where each motif's informative span
lies in each sequence it was found in: motif, sequence, 0-based start, end, strand),
``motifs.meme`` (the motifs' trimmed PPMs), ``logos/<motif>.png`` and ``report.md``.

Each output folder is written beside its final name and moved into place when complete, so a
failed run leaves nothing that looks finished. torch is imported inside the functions.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Literal

from genoseq.errors import InputError
from genoseq.options import TableInput, coerce
from genoseq.progress import ProgressChoice

NPZ = "attributions.npz"


def _load_classifier(path: str, device: str):
    from genoseq.models.classifier import SequenceClassifier
    from genoseq.runtime import resolve_device

    config = Path(path) / "config.json"
    if config.is_file():
        try:
            kind = json.loads(config.read_text()).get("model_type")
        except ValueError:
            kind = None
        if kind == "GenoSeqLM":
            raise InputError("this is a language model; attributions need a classifier (genoseq classify fit). "
                             "For a language model use genoseq interpret ism", path=str(path), field="model",
                             kind="not_a_classifier")
    return SequenceClassifier.from_pretrained(path, map_location=resolve_device(device)).eval()


def attributions(
    model: str,
    table: TableInput,
    out: str,
    class_name: str | None = None,
    method: Literal["ism", "ig", "deepliftshap"] = "ig",
    score: Literal["logit", "log_prob"] = "logit",
    baseline: Literal["shuffle", "zeros", "uniform"] = "shuffle",
    n_shuffles: int = 10,
    n_steps: int = 20,
    logos: int = 10,
    batch_size: int = 64,
    device: str = "auto",
    seed: int = 0,
    progress: bool | ProgressChoice = "auto",
) -> dict:
    """Per-base attributions of a classifier's class: arrays, a summary table and logos.

    Args:
        model: Classifier directory written by ``genoseq classify fit``.
        table: The sequences (``--input``, ``--split``, ``--sequence_column``, ``--label_column``,
            or ``--table.input``...): a table, GenomicBenchmarks folder or FASTA file.
        out: Output folder (replaced when the run succeeds).
        class_name: Class to explain (default: each sequence's predicted class).
        method: ``ism`` (saturation mutagenesis through the head), ``ig`` (integrated gradients)
            or ``deepliftshap``.
        score: Explain the class's ``logit`` or its ``log_prob``.
        baseline: References of the gradient methods: ``shuffle`` (dinucleotide shuffles of each
            sequence), ``zeros`` (all N) or ``uniform``.
        n_shuffles: Shuffled references per sequence.
        n_steps: Integration steps per reference (``ig``).
        logos: Write a logo PNG for the first this many sequences.
        batch_size: Rows per forward pass.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda:1``, ...
        seed: Seed of the shuffled references.
        progress: ``auto``, ``bar``, ``lines`` or ``none``.

    Returns:
        A summary: sequences, method, classes, output folder.
    """
    import time

    import numpy as np

    from genoseq.figures import attribution_figure
    from genoseq.runtime import atomic_directory, atomic_output, safe_name, save_figure, write_json
    from genoseq.tasks.interpret.attribution import classifier_attributions, stack_padded

    table = coerce(TableInput, table)
    inputs = table.read()
    names, sequences, labels = inputs.names, inputs.sequences, inputs.labels
    clf = _load_classifier(model, device)
    started = time.perf_counter()
    result = classifier_attributions(clf, sequences, method=method, class_name=class_name, score=score,
                                     baseline=baseline, n_shuffles=n_shuffles, n_steps=n_steps,
                                     batch_size=batch_size, seed=seed, progress=progress)
    seconds = time.perf_counter() - started
    lengths = np.array([len(o) for o in result.onehot], dtype=np.int64)
    lmax = int(lengths.max())
    classes = result.classes
    predicted = [classes[int(i)] for i in result.probabilities.argmax(1)]
    summary = {
        "model": str(model), "input": str(table.input), "n": len(names), "method": method, "score": score,
        "baseline": result.baseline, "classes": classes, "seconds": round(seconds, 2),
        "sequences_per_second": round(len(names) / seconds, 3) if seconds > 0 else None, **result.settings,
    }
    if result.completeness_gap is not None:
        summary["completeness_gap_mean"] = float(result.completeness_gap.mean())
    with atomic_directory(out) as tmp:
        arrays = {
            "names": np.array(names, dtype=str), "lengths": lengths, "classes": np.array(classes, dtype=str),
            "targets": np.array(result.targets, dtype=str), "probabilities": result.probabilities,
            "onehot": stack_padded(result.onehot, lmax), "hypothetical": stack_padded(result.hypothetical, lmax),
            "contributions": stack_padded(result.contributions, lmax),
        }
        if result.ism is not None:
            arrays["ism"] = stack_padded(result.ism, lmax)
        np.savez_compressed(tmp / NPZ, **arrays)
        with atomic_output(tmp / "summary.tsv") as handle:
            columns = ["name", "length"] + (["label"] if labels is not None else [])
            handle.write("\t".join(columns + ["predicted", "target", "p_target", "total_contribution",
                                              "top_position", "top_contribution"]) + "\n")
            for i, name in enumerate(names):
                per_base = result.contributions[i].sum(1)
                top = int(np.abs(per_base).argmax())
                t = classes.index(result.targets[i])
                row = [name, str(lengths[i])] + ([labels[i]] if labels is not None else [])
                row += [predicted[i], result.targets[i], f"{result.probabilities[i, t]:.6g}", f"{per_base.sum():.6g}",
                        str(top + 1), f"{per_base[top]:.6g}"]
                handle.write("\t".join(row) + "\n")
        for i in range(min(logos, len(names))):
            title = f"{names[i]}: {method} for class {result.targets[i]} (p={result.probabilities[i, classes.index(result.targets[i])]:.3f})"
            fig = attribution_figure(result.contributions[i], ism=None if result.ism is None else result.ism[i],
                                           sequence=sequences[i], title=title, start=1)
            save_figure(fig, tmp / "logos" / f"{i + 1}_{safe_name(names[i])}.png", dpi=110)
        write_json(tmp / "attributions.json", summary)
    print(f"wrote {out}: {method} attributions of {len(names)} sequences ({seconds:.1f} s)", file=sys.stderr)
    return summary


def read_attributions(path: str | Path) -> dict:
    """The arrays of ``attributions.npz`` (a folder written by ``interpret attributions`` or the file)."""
    import numpy as np

    from genoseq.runtime import require_file

    p = Path(path)
    if p.is_dir():
        p = p / NPZ
    require_file(p, "No attributions (attributions.npz)")
    try:
        with np.load(p, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as err:
        raise InputError(f"not an attributions file written by genoseq interpret attributions: {err}",
                         path=str(p)) from None
    missing = {"onehot", "hypothetical", "lengths"} - set(arrays)
    if missing:
        raise InputError(f"attributions file lacks {', '.join(sorted(missing))}", path=str(p))
    return arrays


def _known_motifs(motifs: str | None, jaspar: str | None, release: str | None) -> tuple[dict, list[str]]:
    """The known motifs of a MEME file and/or a JASPAR selection (``COLLECTION[:TAX_GROUP,...]``),
    and the names of their sources."""
    from genoseq.motif_files import read_jaspar, read_meme

    known = read_meme(motifs) if motifs else {}
    if jaspar:
        collection, _, groups = jaspar.partition(":")
        known.update(read_jaspar(collection.strip() or "CORE", [g.strip() for g in groups.split(",") if g.strip()],
                                 release))
    return known, [s for s in (motifs, jaspar and f"JASPAR {jaspar}") if s]


def _write_motif_tables(folder: Path, found, names, lengths) -> None:
    """``motifs.tsv`` (a motif per row with its best match) and ``seqlets.tsv`` (where each motif
    lies in each sequence)."""
    from genoseq.runtime import write_tsv

    rows = []
    for m in found:
        best = m.matches[0] if m.matches else None
        rows.append([m.name, m.sign, str(m.n_seqlets), m.consensus, str(len(m.consensus))]
                    + ([best.target, f"{best.p_value:.3g}", f"{best.q_value:.3g}", best.strand] if best else [""] * 4))
    write_tsv(folder / "motifs.tsv",
              ["name", "sign", "n_seqlets", "consensus", "width", "best_match", "p_value", "q_value", "strand"], rows)
    write_tsv(folder / "seqlets.tsv", ["motif", "sequence", "start", "end", "strand"],
              ([m.name, str(names[i]), str(a), str(b), strand] for m in found for i, a, b, strand in m.sites(lengths)))


def motifs(
    attributions: str,
    out: str,
    motifs: str | None = None,
    jaspar: str | None = None,
    jaspar_release: str | None = None,
    target: str | None = None,
    n_matches: int = 3,
    sliding_window_size: int = 15,
    flank_size: int = 5,
    min_metacluster_size: int = 100,
    final_min_cluster_size: int = 20,
    n_leiden_runs: int = 10,
    trim_threshold: float = 0.3,
    trim_to_window_size: int = 30,
    initial_flank_to_add: int = 10,
) -> dict:
    """Recurring patterns of many sequences' attributions (TF-MoDISco), matched to known motifs.

    Args:
        attributions: Folder written by ``genoseq interpret attributions`` (or its
            ``attributions.npz``); its sequences may differ in length.
        out: Output folder (replaced when the run succeeds).
        motifs: Known motifs, a MEME file, to match by TOMTOM.
        jaspar: Known motifs from the JASPAR database pyjaspar ships (offline), as
            ``COLLECTION[:TAX_GROUP,...]``, e.g. ``CORE:vertebrates``; with ``motifs``, both.
        jaspar_release: JASPAR release (default: the newest pyjaspar holds).
        target: Use only the sequences whose explained class is this one.
        n_matches: Matches reported per motif in the report.
        sliding_window_size: Seqlet window width.
        flank_size: Bases added on each side of a seqlet.
        min_metacluster_size: Fewer seqlets of a sign than this: no patterns of that sign.
        final_min_cluster_size: Smallest pattern kept (seqlets).
        n_leiden_runs: Leiden clustering restarts.
        trim_threshold: Share of the maximum summed |CWM| that bounds a motif's informative span.
        trim_to_window_size: Width of the most informative window each pattern is trimmed to.
        initial_flank_to_add: Bases added on each side of it.

    Returns:
        A summary: sequences used, motifs found, output folder.
    """
    import numpy as np

    from genoseq.figures import motif_logo
    from genoseq.motif_files import write_meme
    from genoseq.runtime import atomic_directory, atomic_output, save_figure, write_json
    from genoseq.tasks.interpret.motifs import discover_motifs, match_motifs

    known, sources = _known_motifs(motifs, jaspar, jaspar_release)  # bad known motifs fail before the long search
    arrays = read_attributions(attributions)
    rows = np.arange(len(arrays["lengths"]))
    if target is not None:
        targets = arrays.get("targets")
        if targets is None or target not in set(targets.tolist()):
            found = sorted(set(targets.tolist())) if targets is not None else []
            raise InputError(f"target: no sequence was explained for class {target!r} (found: {', '.join(found)})",
                             field="target", kind="unknown_class")
        rows = rows[targets == target]
    lengths = arrays["lengths"][rows]
    onehot = [arrays["onehot"][r, :n] for r, n in zip(rows, lengths)]
    hypothetical = [arrays["hypothetical"][r, :n] for r, n in zip(rows, lengths)]
    found = discover_motifs(onehot, hypothetical,
                            sliding_window_size=sliding_window_size, flank_size=flank_size,
                            min_metacluster_size=min_metacluster_size, final_min_cluster_size=final_min_cluster_size,
                            n_leiden_runs=n_leiden_runs, trim_threshold=trim_threshold,
                            trim_to_window_size=trim_to_window_size, initial_flank_to_add=initial_flank_to_add)
    if known:
        match_motifs(found, known, n_best=n_matches)
    summary = {"attributions": str(attributions), "known_motifs": " + ".join(sources) or None,
               "n_known_motifs": len(known), "target": target, "n_sequences": len(rows),
               "lengths": [int(lengths.min()), int(lengths.max())], "n_motifs": len(found),
               "motifs": [{"name": m.name, "sign": m.sign, "n_seqlets": m.n_seqlets, "consensus": m.consensus,
                           "best_match": m.matches[0].target if m.matches else None,
                           "p_value": m.matches[0].p_value if m.matches else None,
                           "q_value": m.matches[0].q_value if m.matches else None} for m in found]}
    with atomic_directory(out) as tmp:
        names = arrays["names"][rows] if "names" in arrays else np.array([f"seq{i}" for i in rows])
        _write_motif_tables(tmp, found, names, lengths)
        write_meme(tmp / "motifs.meme", {m.name: m.trimmed_ppm for m in found})
        lines = [f"# Motifs of {len(rows)} sequences' attributions", "",
                 f"TF-MoDISco (window {sliding_window_size}, flank {flank_size}); "
                 + (f"TOMTOM against {' + '.join(sources)} ({len(known)} motifs)." if known
                    else "no known motifs given."), ""]
        for m in found:
            s, e = m.trimmed
            save_figure(motif_logo(m.ppm[s:e], m.cwm[s:e], title=f"{m.name}: {m.n_seqlets} seqlets"),
                        tmp / "logos" / f"{m.name}.png", dpi=110)
            lines += [f"## {m.name} ({m.sign}, {m.n_seqlets} seqlets): {m.consensus}", "",
                      f"![{m.name}](logos/{m.name}.png)", ""]
            lines += [f"- {mm.target}: p = {mm.p_value:.3g}, q = {mm.q_value:.3g}, strand {mm.strand}" for mm in m.matches]
            lines.append("")
        with atomic_output(tmp / "report.md") as handle:
            handle.write("\n".join(lines))
        write_json(tmp / "motifs.json", summary)
    print(f"wrote {out}: {len(found)} motifs from {len(rows)} sequences", file=sys.stderr)
    return summary


__all__ = ["attributions", "motifs", "read_attributions"]
