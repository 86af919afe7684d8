"""Labelled examples at the intervals of a genome: the sequences of a BED / GFF3 / GenBank file's
intervals with their classes or numeric target values, read through
:class:`~genoseq.datamodules.intervals.IntervalDataModule` (resized, stranded and split by
contig as it does), for the classifiers and regression models that train on sequences.
"""

from __future__ import annotations

import numpy as np

from genoseq.datamodules.intervals import IntervalDataModule, IntervalDataset
from genoseq.genome import Genome
from genoseq.tokenizer import Tokenizer


def interval_examples(genome: str | Genome, intervals: str, *, targets: list[str] | None = None,
                      window_length: int | None = None, stranded: bool = False,
                      val_contigs: list[str] | None = None) -> tuple[dict[str, list[tuple[str, object]]], dict[str, int]]:
    """The examples of the file ``intervals`` on ``genome`` and their counts.

    Examples are per split (``train``, and ``val`` for the intervals on ``val_contigs``)
    ``(sequence, label)`` pairs: the class (the BED name or feature type), or with ``targets``
    the list of the values of those BED columns. ``window_length`` resizes every interval
    around its centre; ``stranded`` reads ``-`` intervals as their reverse complement. The
    counts are the examples per split and the intervals ``dropped``.
    """
    dm = IntervalDataModule(genome, intervals=intervals, target="value" if targets else "class",
                            value_columns=targets or ("score",), window_length=window_length, stranded=stranded,
                            val_contigs=val_contigs, convert_gzip=True)
    dm.setup()
    tokenizer = Tokenizer()
    examples: dict[str, list[tuple[str, object]]] = {}
    for split, found in dm.examples.items():
        data = IntervalDataset(dm, found)
        pairs = []
        for i in range(len(found)):
            item = data[(i, 0, 0)]
            sequence = tokenizer.decode(item["input_ids"].numpy().astype(np.uint8))
            pairs.append((sequence, item["targets"].tolist() if targets else dm.example_label(split, i)))
        examples[split] = pairs
    counts = {split: len(found) for split, found in dm.examples.items()}
    counts["dropped"] = sum(dm.dropped.values())
    return examples, counts


__all__ = ["interval_examples"]
