"""Supervised examples from genomic intervals: sequence windows with class, numeric, bigWig or
per-base targets.

:class:`IntervalDataModule` reads examples from a genome (FASTA or token store, through
:func:`genoseq.genome.open_genome`) at the intervals of a BED / GFF3 / GenBank file, or at
windows tiling the genome, with one kind of target (``target=``):

================ ======================================== =====================================
target           from                                     batch key, dtype, shape
================ ======================================== =====================================
``class``        BED name or GFF feature type             ``labels`` int64 (B,)
``value``        BED score / numeric columns              ``targets`` float32 (B, T)
``signal``       bigWig files, mean over the example      ``targets`` float32 (B, T)
``profile``      bigWig files, mean per bin               ``targets`` float32 (B, T, bins)
``segmentation`` GFF3/GenBank features as per-base labels ``labels`` int64 (B, 2, L)
================ ======================================== =====================================

``T`` is the number of targets (value columns or bigWig files: several at once for multi-task
heads; their names in :attr:`IntervalDataModule.target_names`). Segmentation labels are
:func:`genoseq.annotation.label_bases` classes per strand: row 0 the example's + strand, row 1
its - strand, both in the example's own orientation. Every batch has ``input_ids`` (B, L) and,
when the examples differ in length, ``attention_mask`` (right padding).

Augmentation (training only): ``jitter`` shifts each example by up to that many bases either
way, drawn per epoch; ``rc_augment`` reads it from a random strand. A reverse-complemented
example keeps its class and values, reverses a profile, and for segmentation swaps the two
strands' label rows and reverses them (a codon position is counted on the gene's own strand, so
the labels stay valid). With ``stranded=True`` intervals are read on their own strand and
``rc_augment`` is refused: such targets depend on the strand.

Splits never let a training base reach validation or test: whole contigs (``val_contigs``,
``test_contigs``) and/or, of every ``block_length`` block of the other contigs, its last
``test_fraction`` to test and the ``val_fraction`` before that to validation. An example goes
to a split only when all of it, jitter included, lies inside one region of that split; the
others are dropped and counted (:attr:`IntervalDataModule.dropped`).

Like the other DataModules, each epoch's plan (example, shift, strand) is made in the main
process from ``seed`` and the epoch by a planner, served by the one
:class:`~genoseq.datamodules.sampling.PlanSampler` (sharded by rank, exact resume from
``state_dict``), and read by a stateless dataset.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Literal, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from genoseq.errors import InputError
from genoseq.genome import Genome, open_genome
from genoseq.tokenizer import PAD, Tokenizer

from .regions import Region, count_n
from .sampling import plan_sampler, saved_position, with_position

__all__ = ["IntervalDataModule", "IntervalDataset", "split_blocks", "Examples", "TargetKind"]

TargetKind = Literal["class", "value", "signal", "profile", "segmentation"]
_TOKENIZER = Tokenizer()


def split_blocks(
    contigs: dict[str, int],
    *,
    val_contigs: Sequence[str] = (),
    test_contigs: Sequence[str] = (),
    val_fraction: float = 0.0,
    test_fraction: float = 0.0,
    block_length: int = 100_000,
) -> dict[str, list[Region]]:
    """Disjoint ``train``/``val``/``test`` regions of one genome (``{contig: length}``).

    Named contigs go whole to validation or test; of every other contig, each
    ``block_length`` block gives its last ``test_fraction`` to test and the ``val_fraction``
    before it to validation (the rule of :func:`genoseq.datamodules.split_regions`, with a
    third split).
    """
    if not (0.0 <= val_fraction < 1.0 and 0.0 <= test_fraction < 1.0 and val_fraction + test_fraction < 1.0):
        raise InputError("val_fraction and test_fraction must be >= 0 with a sum below 1", field="val_fraction")
    if block_length < 1:
        raise InputError("block_length must be positive", field="block_length")
    for name in (*val_contigs, *test_contigs):
        if name not in contigs:
            raise InputError(f"held-out contig {name!r} is not in the genome", field="val_contigs", kind="unknown_contig")
    both = set(val_contigs) & set(test_contigs)
    if both:
        raise InputError(f"contig(s) both in validation and test: {', '.join(sorted(both))}", field="test_contigs")
    out: dict[str, list[Region]] = {"train": [], "val": [], "test": []}
    for name, length in contigs.items():
        if name in test_contigs or name in val_contigs:
            out["test" if name in test_contigs else "val"].append(Region(0, name, 0, length))
            continue
        for b in range(0, length, block_length):
            e = min(b + block_length, length)
            t_cut = e - int(round((e - b) * test_fraction))
            v_cut = t_cut - int(round((e - b) * val_fraction))
            for split, s, t in (("train", b, v_cut), ("val", v_cut, t_cut), ("test", t_cut, e)):
                if t > s:
                    out[split].append(Region(0, name, s, t))
    return out


@dataclass
class Examples:
    """Examples of one split: contig id, start, end, strand (+1 / -1) and target row index."""

    cid: np.ndarray
    start: np.ndarray
    end: np.ndarray
    strand: np.ndarray
    row: np.ndarray

    def __len__(self) -> int:
        return len(self.cid)

    def take(self, keep: np.ndarray) -> "Examples":
        return Examples(self.cid[keep], self.start[keep], self.end[keep], self.strand[keep], self.row[keep])


class _Planner:
    """Each epoch's plan: rows of (example index, shift, reverse flag)."""

    def __init__(self, n: int, *, jitter: int, rc_augment: bool, shuffle: bool, seed: int, stream: int) -> None:
        self.n, self.jitter, self.rc_augment, self.shuffle = n, jitter, rc_augment, shuffle
        self.seed, self.stream = seed, stream

    def __len__(self) -> int:
        return self.n

    def __call__(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.stream, epoch])
        order = rng.permutation(self.n) if self.shuffle else np.arange(self.n)
        shift = rng.integers(-self.jitter, self.jitter + 1, size=self.n) if self.jitter else np.zeros(self.n, np.int64)
        reverse = rng.integers(0, 2, size=self.n) if self.rc_augment else np.zeros(self.n, np.int64)
        return np.stack([order, shift, reverse], axis=1).astype(np.int64)


class IntervalDataset(Dataset):
    """Reads one example from ``(index, shift, reverse)``; see :class:`IntervalDataModule`."""

    def __init__(self, module: "IntervalDataModule", examples: Examples) -> None:
        self.genome = module.genome
        self.contig_names = module.contig_names
        self.examples = examples
        self.target = module.target
        self.values = module._values  # (rows, T) float32 for class/value targets
        self.signals = module._signals
        self.bins = module.bins
        self.labels = module._labels  # {contig: (2, L) uint8} for segmentation

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: tuple[int, int, int]) -> dict[str, torch.Tensor]:
        i, shift, reverse = (int(x) for x in index)
        ex = self.examples
        contig = self.contig_names[int(ex.cid[i])]
        start, end = int(ex.start[i]) + shift, int(ex.end[i]) + shift
        minus = (int(ex.strand[i]) < 0) != bool(reverse)
        ids = self.genome.fetch(contig, start, end, "-" if minus else "+")
        item = {"input_ids": torch.from_numpy(ids.astype(np.int64))}
        if self.target == "class":
            item["labels"] = torch.tensor(int(self.values[int(ex.row[i]), 0]), dtype=torch.int64)
        elif self.target == "value":
            item["targets"] = torch.from_numpy(self.values[int(ex.row[i])].astype(np.float32))
        elif self.target == "signal":
            item["targets"] = torch.tensor([s.mean(contig, start, end) for s in self.signals], dtype=torch.float32)
        elif self.target == "profile":
            prof = np.stack([s.profile(contig, start, end, self.bins) for s in self.signals])
            item["targets"] = torch.from_numpy(np.ascontiguousarray(prof[:, ::-1] if minus else prof))
        else:
            lab = self.labels[contig][:, start:end]
            if minus:  # the other strand's labels, in the example's orientation
                lab = lab[::-1, ::-1]
            item["labels"] = torch.from_numpy(np.ascontiguousarray(lab).astype(np.int64))
        return item


def collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack examples; examples of different lengths are right-padded (``attention_mask``;
    per-base labels padded with :data:`genoseq.annotation.IGNORE`)."""
    from genoseq.annotation import IGNORE

    lengths = [len(it["input_ids"]) for it in items]
    longest = max(lengths)
    if min(lengths) == longest:
        return {k: torch.stack([it[k] for it in items]) for k in items[0]}
    batch = {"input_ids": torch.full((len(items), longest), PAD, dtype=torch.int64),
             "attention_mask": torch.zeros((len(items), longest), dtype=torch.bool)}
    for j, (it, n) in enumerate(zip(items, lengths)):
        batch["input_ids"][j, :n] = it["input_ids"]
        batch["attention_mask"][j, :n] = True
    for key in items[0]:
        if key == "input_ids":
            continue
        if key == "labels" and items[0][key].ndim == 2:
            out = torch.full((len(items), 2, longest), IGNORE, dtype=torch.int64)
            for j, (it, n) in enumerate(zip(items, lengths)):
                out[j, :, :n] = it[key]
            batch[key] = out
        else:
            batch[key] = torch.stack([it[key] for it in items])
    return batch


class IntervalDataModule(L.LightningDataModule):
    """Examples at genomic intervals or windows, with class, numeric, bigWig or per-base targets.

    Args:
        genome: FASTA (plain/bgzip) or token store, or an opened :class:`~genoseq.genome.Genome`
            (e.g. :meth:`genoseq.annotation.Annotation.genome` for a GFF3 with ``##FASTA``).
        intervals: BED / GFF3 / GenBank file (or a list of :class:`genoseq.annotation.Feature`)
            giving the examples; ``None``: windows of ``window_length`` every ``stride`` bases.
        target: ``class``, ``value``, ``signal``, ``profile`` or ``segmentation`` (module docstring).
        annotation: Features for segmentation (GFF3 / GenBank / BED path, an
            :class:`~genoseq.annotation.Annotation`, or a feature list); default ``intervals``.
        class_map: Feature type -> class changes for segmentation (``"type=class,..."``).
        classes: For ``class``: the label order (default: sorted training labels).
        value_columns: For ``value``: BED columns, ``"score"`` or 1-based column numbers (>= 7).
        bigwig: For ``signal``/``profile``: one bigWig path or a list (one target each).
        bins: For ``profile``: bins per example (the example length must be a multiple).
        window_length: Example length. Intervals are resized around their centre to it; ``None``
            keeps their own lengths (padded batches). Required without ``intervals``.
        stride: Step between windows without ``intervals`` (default ``window_length``).
        max_n_fraction: Skip windows with more N than this (windows only).
        stranded: Read intervals on their own strand (``-``: reverse complement).
        jitter: Most bases a training example is shifted either way (a new shift each epoch).
        rc_augment: Read each training example from a random strand (targets flipped to match).
        val_contigs, test_contigs: Contigs held out whole.
        val_fraction, test_fraction: Shares of every ``block_length`` block of the other contigs.
        block_length: Block length of the fraction splits.
        batch_size, num_workers, seed, shuffle: As in the other DataModules.
        convert_gzip: Convert a plain-gzip FASTA to bgzip instead of refusing it.
    """

    def __init__(
        self,
        genome: "str | os.PathLike | Genome",
        intervals=None,
        target: TargetKind = "class",
        annotation=None,
        class_map: str | dict | None = None,
        classes: Sequence[str] | None = None,
        value_columns: Sequence[str | int] = ("score",),
        bigwig: str | Sequence[str] | None = None,
        bins: int | None = None,
        window_length: int | None = None,
        stride: int | None = None,
        max_n_fraction: float = 0.1,
        stranded: bool = False,
        jitter: int = 0,
        rc_augment: bool = False,
        val_contigs: Sequence[str] | None = None,
        test_contigs: Sequence[str] | None = None,
        val_fraction: float = 0.0,
        test_fraction: float = 0.0,
        block_length: int = 100_000,
        batch_size: int = 16,
        num_workers: int = 0,
        seed: int = 0,
        shuffle: bool = True,
        convert_gzip: bool = False,
    ) -> None:
        super().__init__()
        if target not in ("class", "value", "signal", "profile", "segmentation"):
            raise InputError(f"target must be class, value, signal, profile or segmentation, not {target!r}",
                             field="target", kind="bad_target")
        if intervals is None and not window_length:
            raise InputError("windows need a window_length (or give intervals)", field="window_length")
        if target in ("class", "value") and intervals is None:
            raise InputError(f"target {target!r} needs intervals (a BED/GFF file)", field="intervals")
        if target in ("signal", "profile") and not bigwig:
            raise InputError(f"target {target!r} needs bigwig", field="bigwig")
        if target == "profile" and not bins:
            raise InputError("target 'profile' needs bins", field="bins")
        if target == "segmentation" and annotation is None and intervals is None:
            raise InputError("segmentation needs an annotation", field="annotation")
        if stranded and rc_augment:
            raise InputError("rc_augment with stranded intervals: their targets depend on the strand",
                             field="rc_augment", kind="rc_not_allowed")
        if jitter < 0:
            raise InputError("jitter must be >= 0", field="jitter")
        self.genome_arg, self.intervals_arg, self.annotation_arg = genome, intervals, annotation
        self.target, self.class_map, self.classes = target, class_map, list(classes) if classes else None
        self.value_columns = list(value_columns)
        self.bigwig = [bigwig] if isinstance(bigwig, (str, os.PathLike)) else list(bigwig or [])
        self.bins, self.window_length, self.stride = bins, window_length, stride or window_length
        self.max_n_fraction, self.stranded, self.jitter, self.rc_augment = max_n_fraction, stranded, jitter, rc_augment
        self.val_contigs, self.test_contigs = list(val_contigs or []), list(test_contigs or [])
        self.val_fraction, self.test_fraction, self.block_length = val_fraction, test_fraction, block_length
        self.batch_size, self.num_workers, self.seed, self.shuffle = batch_size, num_workers, seed, shuffle
        self.convert_gzip = convert_gzip
        self.genome: Genome | None = None
        self._resume_position: tuple[int, int] | None = None
        self._values = np.zeros((0, 1), np.float32)
        self._signals: list = []
        self._labels: dict[str, np.ndarray] = {}
        self.scheme = None
        self.label_stats = None
        self.target_names: list[str] = []
        self.dropped: dict[str, int] = {}

    # ------------------------------------------------------------------ setup
    def setup(self, stage: str | None = None) -> None:
        if self.genome is not None:
            return
        from genoseq.annotation import BigWigSignal

        g = self.genome_arg
        self.genome = g if isinstance(g, Genome) else open_genome(g, convert_gzip=self.convert_gzip)
        contigs = dict(self.genome.contigs)
        features = self._read_features(self.intervals_arg) if self.intervals_arg is not None else None
        if self.target == "segmentation":
            self._setup_labels(features, contigs)
            contigs = {c: n for c, n in contigs.items() if c in self._labels}  # annotated contigs only
        if self.target in ("signal", "profile"):
            self._signals = [BigWigSignal(p, contigs) for p in self.bigwig]
            self.target_names = [os.path.basename(str(p)) for p in self.bigwig]
        self.contig_names = list(self.genome.contigs)
        self.regions = split_blocks(contigs, val_contigs=self.val_contigs, test_contigs=self.test_contigs,
                                    val_fraction=self.val_fraction, test_fraction=self.test_fraction,
                                    block_length=self.block_length)
        candidates = self._intervals(features) if features is not None and self.target != "segmentation" else None
        self.examples: dict[str, Examples] = {}
        for split, regions in self.regions.items():
            margin = self.jitter if split == "train" else 0
            if candidates is None:
                ex = self._windows(regions, margin)
            else:
                ex = self._inside(candidates, regions, margin)
            self.examples[split] = ex
        if candidates is not None:
            used = sum(len(e) for e in self.examples.values())
            self.dropped = {"crossing_splits_or_contig_ends": int(len(candidates) - used)}
        if self.target == "class" and candidates is not None:
            self._setup_classes()
        if len(self.examples["train"]) == 0:
            raise InputError("no training examples: every interval or window falls in validation/test, crosses a "
                             "split boundary or a contig end, or the window is longer than the training regions",
                             field="window_length", kind="no_examples")

    def _read_features(self, source):
        from genoseq.annotation import Annotation, read_annotation

        if isinstance(source, Annotation):
            return source.features
        if isinstance(source, (str, os.PathLike)):
            return read_annotation(source).features
        return list(source)

    def _setup_labels(self, features, contigs: dict[str, int]) -> None:
        from genoseq.annotation import Annotation, class_scheme, label_bases

        source = self.annotation_arg if self.annotation_arg is not None else self.intervals_arg
        path = getattr(source, "path", None) or (str(source) if isinstance(source, (str, os.PathLike)) else None)
        feats = source.features if isinstance(source, Annotation) else (
            features if source is self.intervals_arg and features is not None else self._read_features(source))
        self.scheme = class_scheme(feats, self.class_map, path=path)
        annotated = {f.contig for f in feats}
        labels, self.label_stats = label_bases(feats, contigs, self.scheme, path=path)
        self._labels = {c: lab for c, lab in labels.items() if c in annotated}

    def _intervals(self, features) -> Examples:
        """Every interval on a genome contig, resized to ``window_length`` when given."""
        contigs = self.genome.contigs
        cid = {name: i for i, name in enumerate(self.contig_names)}
        keep = [f for f in features if f.contig in contigs]
        if features and not keep:
            raise InputError("no interval lies on a genome contig", path=str(self.intervals_arg), kind="no_matching_contig")
        starts = np.array([f.start for f in keep], dtype=np.int64)
        ends = np.array([f.end for f in keep], dtype=np.int64)
        if self.window_length:
            centre = (starts + ends) // 2
            starts = centre - self.window_length // 2
            ends = starts + self.window_length
        strand = np.array([-1 if (self.stranded and f.strand == "-") else 1 for f in keep], dtype=np.int64)
        ex = Examples(np.array([cid[f.contig] for f in keep], dtype=np.int64), starts, ends, strand,
                      np.arange(len(keep), dtype=np.int64))
        self._kept_features = keep
        self._setup_values(keep)
        return ex

    def _setup_values(self, keep) -> None:
        if self.target == "value":
            cols = []
            for col in self.value_columns:
                cols.append(np.array([_bed_value(f, col, self.intervals_arg) for f in keep], dtype=np.float32))
            self._values = np.stack(cols, axis=1) if cols else np.zeros((len(keep), 0), np.float32)
            self.target_names = [str(c) for c in self.value_columns]
        elif self.target == "class":
            self._raw_labels = [f.type for f in keep]  # a BED line's type is its name

    def example_label(self, split: str, i: int) -> str:
        """The class name (BED name or feature type) of example ``i`` of ``split``, for ``target="class"``."""
        return self._raw_labels[int(self.examples[split].row[i])]

    def _setup_classes(self) -> None:
        train_rows = self.examples["train"].row
        labels = self._raw_labels
        classes = self.classes or sorted({labels[r] for r in train_rows})
        index = {c: i for i, c in enumerate(classes)}
        unknown = sorted({labels[r] for s in self.examples.values() for r in s.row} - set(index))
        if unknown:
            raise InputError(f"label(s) outside the classes {classes}: {', '.join(unknown[:5])}", field="classes",
                             kind="unknown_class")
        if len(classes) < 2:
            raise InputError(f"a single class ({classes[0] if classes else 'none'}) in the training intervals",
                             field="classes", kind="single_class")
        self.classes = classes
        self._values = np.array([[index[c]] for c in labels], dtype=np.float32)

    def _inside(self, ex: Examples, regions: list[Region], margin: int) -> Examples:
        """The examples lying, with ``margin`` either side, inside one of ``regions``."""
        keep = np.zeros(len(ex), dtype=bool)
        cid = {name: i for i, name in enumerate(self.contig_names)}
        for contig_id in np.unique(ex.cid):
            name = self.contig_names[int(contig_id)]
            rs = sorted((r for r in regions if r.contig == name), key=lambda r: r.start)
            if not rs:
                continue
            r_start = np.array([r.start for r in rs])
            r_end = np.array([r.end for r in rs])
            sel = np.flatnonzero(ex.cid == cid[name])
            a, b = ex.start[sel] - margin, ex.end[sel] + margin
            k = np.searchsorted(r_start, a, side="right") - 1
            ok = (k >= 0) & (a >= r_start[np.maximum(k, 0)]) & (b <= r_end[np.maximum(k, 0)]) & (ex.end[sel] > ex.start[sel])
            keep[sel[ok]] = True
        return ex.take(keep)

    def _windows(self, regions: list[Region], margin: int) -> Examples:
        """Windows of ``window_length`` every ``stride`` bases inside each region (N filtered)."""
        w = int(self.window_length)
        max_n = int(math.floor(self.max_n_fraction * w))
        cid = {name: i for i, name in enumerate(self.contig_names)}
        parts = []
        for r in regions:
            first, last = r.start + margin, r.end - margin - w
            if last < first:
                continue
            starts = np.arange(first, last + 1, self.stride, dtype=np.int64)
            runs = self.genome.n_runs(r.contig)
            if len(runs):
                starts = starts[count_n(runs, starts, w) <= max_n]
            parts.append((np.full(len(starts), cid[r.contig], dtype=np.int64), starts))
        c = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
        s = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int64)
        return Examples(c, s, s + w, np.ones(len(s), np.int64), np.arange(len(s), dtype=np.int64))

    # ------------------------------------------------------------------ loaders
    @property
    def num_classes(self) -> int:
        if self.target == "segmentation":
            return self.scheme.num_classes if self.scheme else 0
        return len(self.classes or [])

    @property
    def labels(self) -> dict[str, np.ndarray]:
        """Segmentation: ``{contig: uint8 (2, length)}`` labels of the annotated contigs."""
        return self._labels

    @property
    def num_targets(self) -> int:
        return len(self.target_names)

    def _loader(self, split: str, train: bool) -> DataLoader:
        ex = self.examples[split]
        planner = _Planner(len(ex), jitter=self.jitter if train else 0, rc_augment=self.rc_augment and train,
                           shuffle=self.shuffle and train, seed=self.seed, stream={"train": 0, "val": 1, "test": 2}[split])
        return DataLoader(IntervalDataset(self, ex), batch_size=self.batch_size, collate_fn=collate,
                          sampler=plan_sampler(self, planner, train=train, batch_size=self.batch_size),
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader | list:
        self.setup()
        return self._loader("val", train=False) if len(self.examples["val"]) else []

    def test_dataloader(self) -> DataLoader | list:
        self.setup()
        return self._loader("test", train=False) if len(self.examples["test"]) else []

    def state_dict(self) -> dict:
        """Saved in Lightning checkpoints: the classes and the position in the epoch (exact resume)."""
        state = {"target": self.target, "seed": self.seed, "classes": self.classes,
                 "scheme": self.scheme.to_dict() if self.scheme else None}
        return with_position(state, self.trainer)

    def load_state_dict(self, state_dict: dict) -> None:
        self._resume_position = saved_position(state_dict)


def _bed_value(feature, column: str | int, path) -> float:
    """A numeric BED column of a feature: ``score`` or a 1-based column number >= 7."""
    if column == "score":
        if feature.score is None:
            raise InputError("interval without a score ('.') where score is the target", path=str(path),
                             record=feature.name or feature.contig, field="value_columns", kind="missing_value")
        return float(feature.score)
    try:
        return float(feature.extra[int(column) - 7])
    except (IndexError, ValueError):
        raise InputError(f"column {column} is missing or not a number", path=str(path),
                         record=feature.name or feature.contig, field="value_columns", kind="missing_value") from None
