"""``genoseq embed``: one vector per sequence from a language model, written to HDF5.

Inputs are a FASTA file (names from the headers) or a table: a labelled TSV/CSV or a
GenomicBenchmarks folder (:func:`genoseq.tables.read_labelled`), or a table with only a
``sequence`` column. The HDF5 file holds ``embeddings`` (N, d_model) float32, ``names`` and,
when the input has them, ``labels``; its attributes record the model, layer, pooling and strand
handling. Layer and pooling are those of :mod:`genoseq.models.embedding`.

Nothing heavy is imported at module level, so building the CLI parser stays fast.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict

from genoseq.options import EmbeddingOptions, coerce
from genoseq.progress import ProgressChoice
from genoseq.tables import SequenceInputs, read_sequences


def write_embeddings(path: str | os.PathLike, vectors, inputs: SequenceInputs, attrs: dict) -> None:
    """Write embeddings, names, labels and attributes to an HDF5 file (atomically).

    The file is built in memory (the vectors are there already) and then written out as bytes:
    HDF5 writing straight to a disk that fills up crashes the process (h5py 3.x segfaults when it
    closes the file), where a plain write fails with an error naming the output.
    """
    import io

    import h5py

    from genoseq.runtime import atomic_output

    strings = h5py.string_dtype(encoding="utf-8")
    image = io.BytesIO()
    with h5py.File(image, "w") as h5:
        h5.create_dataset("embeddings", data=vectors, compression="gzip")
        h5.create_dataset("names", data=inputs.names, dtype=strings)
        if inputs.labels is not None:
            h5.create_dataset("labels", data=inputs.labels, dtype=strings)
        for key, value in attrs.items():
            h5.attrs[key] = value
    with atomic_output(path, "wb") as handle:
        handle.write(image.getbuffer())


def embed(
    model: str,
    out: str,
    fasta: str | None = None,
    tsv: str | None = None,
    embedding: EmbeddingOptions = EmbeddingOptions(),
    batch_size: int = 32,
    split: str = "train",
    sequence_column: str = "sequence",
    label_column: str = "label",
    name_column: str = "name",
    device: str = "auto",
    progress: bool | ProgressChoice = "auto",
) -> dict:
    """Embed sequences with a language model and write them to HDF5.

    The HDF5 file holds ``embeddings`` (N, dim) float32, ``names`` and (for labelled input)
    ``labels``, with attributes ``model``, ``layer``, ``pooling``, ``rc_average``,
    ``rc_concat``, ``d_model`` (the vector width).

    Args:
        model: Directory of a released model (``GenoSeqLM.save_pretrained``).
        out: HDF5 file to write.
        fasta: Input FASTA (plain or gzip); names are the record names.
        tsv: Input table (TSV/CSV with a ``sequence`` column, optional ``label`` and ``name``
            columns) or a GenomicBenchmarks folder.
        embedding: How hidden states become one vector (``--layer``, ``--pooling``,
            ``--rc_average``, ``--rc_concat``, ``--max_length``, or ``--embedding.layer``...).
        batch_size: Sequences per forward pass.
        split: Split to read from a GenomicBenchmarks folder.
        sequence_column: Sequence column of a table.
        label_column: Label column of a table (optional).
        name_column: Name column of a table (optional; default names are row numbers).
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda:1``, ...
        progress: ``auto`` (a live bar on a terminal, plain progress lines in a log file), ``bar``, ``lines`` or ``none``.

    Returns:
        A summary: number of sequences, dimension, output path, seconds.
    """
    import genoseq
    from genoseq.models.embedding import Embedder

    started = time.perf_counter()
    embedding = coerce(EmbeddingOptions, embedding)
    inputs = read_sequences(
        fasta, tsv, split=split, sequence_column=sequence_column, label_column=label_column, name_column=name_column
    )
    embedder = Embedder(model, **asdict(embedding), batch_size=batch_size, device=device)
    vectors = embedder.embed(inputs.sequences, progress=progress)
    attrs = {
        "model": str(model),
        "layer": "final" if embedding.layer is None else int(embedding.layer),
        "pooling": embedding.pooling,
        "rc_average": bool(embedding.rc_average),
        "rc_concat": bool(embedding.rc_concat),
        "d_model": embedder.dim,
        "n_layers": embedder.model.config.n_layers,
        "input": str(fasta if fasta is not None else tsv),
        "genoseq_version": genoseq.__version__,
    }
    write_embeddings(out, vectors, inputs, attrs)
    seconds = round(time.perf_counter() - started, 3)
    print(f"wrote {out}: {len(vectors)} x {embedder.dim} embeddings ({embedding.pooling}, layer {attrs['layer']}) in {seconds} s", file=sys.stderr)
    return {"out": str(out), "n": len(vectors), "dim": embedder.dim, "seconds": seconds, **attrs}


__all__ = ["embed", "write_embeddings"]
