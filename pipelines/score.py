"""``genoseq score``: log-likelihood and bits per base of every record of a FASTA file.

Each record is scored by :mod:`genoseq.tasks.scoring` (bounded memory, however long; position 1
has no context and is not scored; N bases are never scored). A bidirectional (masked) model such
as a converted Caduceus gives a **pseudo-log-likelihood** in the same columns (every base masked
once, position 1 scored too); ``<out>.json`` says which (``likelihood``, ``likelihood_note``).
"""

from __future__ import annotations

import json
from pathlib import Path

from genoseq.progress import ProgressChoice

from genoseq.tasks.scoring import LIKELIHOOD_NOTES, PSEUDO, bits_per_base, likelihood_kind, summarize

COLUMNS = ("name", "length", "scored_bases", "log_likelihood", "bits_per_base")


def score(
    model: str,
    fasta: str,
    out: str = "scores.tsv",
    chunk_size: int | None = None,
    context: int | None = None,
    batch_size: int = 4,
    max_rows: int | None = None,
    attention_window: int | None = None,
    device: str = "auto",
    convert_gzip: bool = False,
    progress: bool | ProgressChoice = "auto",
) -> dict:
    """Score every record of a FASTA file with a pretrained model.

    Writes ``out`` (TSV: name, length, scored_bases, log_likelihood in nats, bits_per_base) and
    ``out`` + ``.json`` (the same plus totals), and prints the total bits per base.

    Args:
        model: Model folder (``RUN_DIR/model`` from ``genoseq pretrain``).
        fasta: FASTA file (plain or bgzip).
        out: Output TSV.
        chunk_size: Tokens per forward pass (default: the model's training window, else 8192).
        context: Minimum context of every scored base, for models with attention or Hyena layers
            (default: an eighth of the window, at least 256 bases, at most a quarter).
        batch_size: Windows per forward pass.
        max_rows: Masked copies of a window per forward pass, for a bidirectional (masked) model,
            whose pseudo-log-likelihood is one pass per base (default: as many as fill
            ``batch_size`` windows, at most ``batch_size`` on a CPU).
        attention_window: Attention layers attend to at most this many previous bases (a sliding
            window), so windows longer than the model was trained on stay within the distances its
            attention knows while Hyena and Mamba2 layers see the whole window: e.g. a 2 kb model
            with ``--chunk_size 65536 --context 32768 --attention_window 2048``.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda:0``...
        convert_gzip: Convert a plain-gzip FASTA to bgzip instead of refusing it.
        progress: ``auto`` (a live bar on a terminal, plain progress lines in a log file), ``bar``, ``lines`` or ``none``.
    """
    import torch

    from genoseq.genome import open_genome
    from genoseq.models.inference import limit_attention, scoring_window, token_log_probs
    from genoseq.models.lm import GenoSeqLM
    from genoseq.progress import Progress
    from genoseq.runtime import atomic_output, atomic_outputs, resolve_device

    from genoseq.errors import InputError

    if attention_window is not None and attention_window < 1:
        raise InputError(f"attention_window must be >= 1, got {attention_window}", field="attention_window")
    if max_rows is not None and max_rows < 1:
        raise InputError(f"max_rows must be >= 1, got {max_rows}", field="max_rows")
    dev = resolve_device(device)
    lm = GenoSeqLM.from_pretrained(model, map_location=dev)
    chunk_size, context = scoring_window(lm, chunk_size, context)
    genome = open_genome(fasta, convert_gzip=convert_gzip)
    rows = []
    with Progress(sum(genome.contigs.values()), desc="score", unit="bp", mode=progress) as bar, \
            limit_attention(lm, attention_window):
        for name, length in genome.contigs.items():
            ids = torch.from_numpy(genome.fetch(name, 0, length).astype("int64"))
            log_probs = token_log_probs(lm, ids, chunk_size=chunk_size, context=context, batch_size=batch_size,
                                        device=dev, on_progress=bar.update, max_rows=max_rows)
            bar.update(length - len(log_probs))  # a causal model does not score the first base
            rows.append(summarize(name, ids, log_probs).to_dict())
    genome.close()

    total_n = sum(r["scored_bases"] for r in rows)
    total_ll = sum(r["log_likelihood"] for r in rows)
    summary = {
        "model": str(model), "fasta": str(fasta), "records": len(rows), "scored_bases": total_n,
        "log_likelihood": total_ll,
        "bits_per_base": bits_per_base(total_ll, total_n),
        "likelihood": likelihood_kind(lm), "likelihood_note": LIKELIHOOD_NOTES[likelihood_kind(lm)],
        "chunk_size": chunk_size, "context": context,
        **({"attention_window": attention_window} if attention_window else {}),
    }
    with atomic_outputs():  # the table and its summary appear together or not at all
        with atomic_output(out) as fh:
            fh.write("\t".join(COLUMNS) + "\n")
            for r in rows:
                fh.write(f"{r['name']}\t{r['length']}\t{r['scored_bases']}\t{r['log_likelihood']:.4f}\t{r['bits_per_base']:.5f}\n")
        with atomic_output(Path(str(out) + ".json")) as fh:
            json.dump({**summary, "per_record": rows}, fh, indent=2)
            fh.write("\n")
    pseudo = " (pseudo-log-likelihood: masked model)" if summary["likelihood"] == PSEUDO else ""
    print(f"genoseq score: {len(rows)} records, {total_n} bases, {summary['bits_per_base']:.4f} bits/base{pseudo} -> {out}")
    return summary
