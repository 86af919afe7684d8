"""The Python API: load a model folder once, then ask it questions in a notebook.

>>> import genoseq                                               # doctest: +SKIP
>>> m = genoseq.load("runs/demo/run/model")                      # doctest: +SKIP
>>> m.score("ACGTTGCA...").bits_per_base                         # doctest: +SKIP
>>> m.embed(["ACGT...", "TTGA..."], pooling="mean").shape        # doctest: +SKIP
>>> m.variant_effects("ref.fa", [("chr1", 1000, "A", "G")])      # doctest: +SKIP
>>> m.generate("ATG", max_new_tokens=100, num_samples=3)         # doctest: +SKIP

A string is one sequence and gives one answer; a list gives a list (an array for embeddings
and probabilities, one row per sequence). Every method runs the library function the command
line and the REST API run (:mod:`genoseq.tasks`), with the same defaults, so the numbers are
the same as ``genoseq score``, ``genoseq embed``, ``genoseq vep``, ``genoseq generate sample``,
``genoseq classify predict`` and ``POST /v1/...``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence, Union

import numpy as np

from genoseq.errors import InputError
from genoseq.runtime import require_file

if TYPE_CHECKING:  # pragma: no cover
    from genoseq.genome import Genome
    from genoseq.tasks.generation import Designs
    from genoseq.tasks.interpret.ism import Dependencies, Mutagenesis
    from genoseq.tasks.scoring import SequenceScore
    from genoseq.tasks.variants import Variant, VariantEffect

Sequences = Union[str, Sequence[str]]


def _many(seqs) -> tuple[list, bool]:
    """``(list, one)``: a string (or one id array) is one sequence, anything else a list of them."""
    if isinstance(seqs, (str, bytes)) or (isinstance(seqs, np.ndarray) and seqs.ndim == 1):
        return [seqs.decode() if isinstance(seqs, bytes) else seqs], True
    return list(seqs), False


def _model_type(path: Path) -> str:
    config = path / "config.json"
    if (path / "manifest.json").is_file() and (path / "model").is_dir():
        return "align_index"
    if not config.is_file():
        raise InputError("not a genoseq model folder (no config.json) or align index (no manifest.json)", path=str(path))
    try:
        return json.loads(config.read_text()).get("model_type", "")
    except (OSError, ValueError) as err:
        raise InputError(f"unreadable config.json: {err}", path=str(path)) from None


def load(path: str | os.PathLike, device: str = "auto"):
    """The model in a folder, ready to use: a :class:`LanguageModel` (``genoseq pretrain``,
    ``generate fit``, ``convert``), a :class:`Classifier` (``classify fit``), an
    :class:`Annotator` (``annotate fit``) or an :class:`Aligner` (``align index``). ``device``: ``auto`` (CUDA when available), ``cpu``, ``cuda:1``..."""
    from genoseq.runtime import resolve_device

    path = require_file(path, "No such model folder", kind="folder")
    kind, dev = _model_type(path), resolve_device(device)
    if kind == "GenoSeqLM":
        from genoseq.models.lm import GenoSeqLM

        return LanguageModel(GenoSeqLM.from_pretrained(path, map_location=dev).eval(), path)
    if kind == "GenoSeqClassifier":
        from genoseq.models.classifier import SequenceClassifier

        return Classifier(SequenceClassifier.from_pretrained(path, map_location=dev).eval(), path)
    if kind == "align_index":
        return Aligner(path, device=str(dev))
    if kind == "GenoSeqSegmenter":
        from genoseq.models.segmenter import Segmenter

        return Annotator(Segmenter.from_pretrained(path, map_location=dev).eval(), path)
    raise InputError(f"model type {kind!r} cannot be loaded here (a read encoder is used through its align index)",
                     path=str(path))


class _Loaded:
    """What every loaded model shares: the model itself (``.model``, in eval mode) and the folder
    it came from (``.path``; None for a model made in memory)."""

    def __init__(self, model, path: str | os.PathLike | None = None) -> None:
        self.model = model.eval()
        self.path = None if path is None else Path(path)


class _Labeller(_Loaded):
    """A loaded model that gives each sequence (or base) one of its ``classes``."""

    @property
    def classes(self) -> list[str]:
        return list(self.model.classes)


class LanguageModel(_Loaded):
    """A DNA language model (:class:`~genoseq.models.lm.GenoSeqLM`, in ``.model``) with the
    questions genoseq answers about sequences."""

    @property
    def tokenizer(self):
        return self.model.tokenizer

    @property
    def device(self):
        return next(self.model.parameters()).device

    def __repr__(self) -> str:
        c = self.model.config
        n = sum(p.numel() for p in self.model.parameters())
        return f"LanguageModel({str(self.path)!r}, pattern={c.pattern!r}x{c.n_repeats}, d_model={c.d_model}, parameters={n:,})"

    def score(self, seqs: Sequences, *, names: Sequence[str] | None = None, chunk_size: int | None = None,
              context: int | None = None, batch_size: int = 4) -> "SequenceScore | list[SequenceScore]":
        """Log-likelihood (nats) and bits per base of each sequence, as ``genoseq score`` scores a
        FASTA record (position 1 and N bases unscored; long sequences in windows). A bidirectional
        (masked) model gives pseudo-log-likelihoods (every base masked once, position 1 scored;
        :func:`genoseq.tasks.scoring.likelihood_kind` says which)."""
        from genoseq.models.inference import as_ids
        from genoseq.tasks.scoring import log_probs_many, summarize

        items, one = _many(seqs)
        ids = [as_ids(self.model, s, name=f"#{i + 1}") for i, s in enumerate(items)]
        names = list(names) if names is not None else [f"#{i + 1}" for i in range(len(ids))]
        if len(names) != len(ids):
            raise InputError(f"names has {len(names)} entries for {len(ids)} sequences", field="names")
        log_probs = log_probs_many(self.model, ids, chunk_size=chunk_size, context=context, batch_size=batch_size)
        found = [summarize(n, x, lp) for n, x, lp in zip(names, ids, log_probs)]
        return found[0] if one else found

    def log_probs(self, seq: str, *, chunk_size: int | None = None, context: int | None = None) -> np.ndarray:
        """``log P(x_t | x_<t)`` of every base of one sequence (L,), NaN where unscored (position 1, N);
        a masked model's ``log P(x_t | the rest)``, position 1 included."""
        from genoseq.models.inference import as_ids, token_log_probs
        from genoseq.tasks.scoring import per_base_log_probs

        ids = as_ids(self.model, seq, name="#1")
        per_base = per_base_log_probs(ids, token_log_probs(self.model, ids, chunk_size=chunk_size, context=context))
        return np.array([np.nan if x is None else x for x in per_base], dtype=np.float64)

    def embed(self, seqs: Sequences, *, layer: int | None = -1, pooling: str = "mean", rc_average: bool = False,
              rc_concat: bool = False, max_length: int | None = None, batch_size: int = 16) -> np.ndarray:
        """Pooled embedding of each sequence, as ``genoseq embed`` computes it: (D,) for one
        sequence, (n, D) for a list (see :mod:`genoseq.models.embedding` for layers and poolings)."""
        from genoseq.models.embedding import Embedder

        items, one = _many(seqs)
        embedder = Embedder(self.model, layer=layer, pooling=pooling, rc_average=rc_average, rc_concat=rc_concat,
                            batch_size=batch_size, max_length=max_length, device=self.device)
        vectors = embedder.embed(items)
        return vectors[0] if one else vectors

    def variant_effects(self, genome: "Genome | str | os.PathLike | dict[str, str]", variants, *,
                        window_length: int | None = None, strands: str = "both", batch_size: int = 64,
                        progress: bool | str = False) -> "VariantEffect | list[VariantEffect]":
        """Zero-shot LLR of each variant (``genoseq vep``'s score).

        ``genome``: a FASTA file or token store, an opened :class:`~genoseq.genome.Genome`, or
        ``{name: sequence}``. ``variants``: one ``(chrom, pos, ref, alt)`` (1-based ``pos``) or a
        :class:`~genoseq.tasks.variants.Variant`, or a list of them. Unscorable variants come
        back with a ``status`` and ``detail`` instead of an ``llr``. A bidirectional (masked)
        model's LLR is the masked marginal (:func:`genoseq.tasks.variants.score_description`).
        """
        from genoseq.tasks.variants import DEFAULT_WINDOW, Variant, score_variants

        one = isinstance(variants, Variant) or (
            isinstance(variants, tuple) and len(variants) == 4 and isinstance(variants[1], (int, np.integer)))
        chosen = [_as_variant(v) for v in ([variants] if one else variants)]
        effects = score_variants(self.model, _as_genome(genome), chosen, window_length=window_length or DEFAULT_WINDOW,
                                 strands=strands, batch_size=batch_size, device=self.device, progress=progress)
        return effects[0] if one else effects

    def ism(self, seqs: Sequences, *, regions: "Sequence[tuple[int, int] | None] | None" = None, radius: int | None = 128,
            strands: str = "both", batch_size: int = 128,
            progress: bool | str = False) -> "Mutagenesis | list[Mutagenesis]":
        """Saturation mutagenesis (``genoseq interpret ism``): the LLR (nats) of each of the three
        substitutions at every base, as :class:`~genoseq.tasks.interpret.ism.Mutagenesis` (``llr``
        (L, 4), ``importance`` (L,)). ``regions[k] = (start, end)`` mutates only that part of
        sequence ``k``; the rest is context. A bidirectional (masked) model's LLRs are masked
        marginals (``radius`` does not apply)."""
        from genoseq.tasks.interpret.ism import saturation_mutagenesis

        items, one = _many(seqs)
        found = saturation_mutagenesis(self.model, items, regions=regions, radius=radius, strands=strands,
                                       batch_size=batch_size, device=None, progress=progress)
        return found[0] if one else found

    def dependencies(self, seq: str, *, strands: str = "both", batch_size: int = 128,
                     progress: bool | str = False) -> "Dependencies":
        """The nucleotide dependency map of one sequence (``genoseq interpret dependencies``):
        :class:`~genoseq.tasks.interpret.ism.Dependencies` with ``dep`` (L, L)."""
        from genoseq.tasks.interpret.ism import dependency_map

        return dependency_map(self.model, seq, strands=strands, batch_size=batch_size, device=None,
                              progress=progress)

    def generate(self, prompt: str = "", *, max_new_tokens: int = 200, num_samples: int = 1,
                 oracle: "Classifier | str | os.PathLike | None" = None, return_designs: bool = False,
                 progress: bool | str = False, **options) -> "list[str] | Designs":
        """``num_samples`` designs continuing ``prompt`` (``genoseq generate sample``'s sampling).

        ``options`` are :class:`~genoseq.tasks.generation.SampleOptions` fields (``temperature``,
        ``top_k``, ``top_p``, ``seed``, ``condition``, ``select``, ``refine_rounds``...) plus the
        constraints ``gc_min``, ``gc_max``, ``forbid`` (motifs) and ``max_homopolymer``. With an
        ``oracle`` classifier (loaded or a folder) designs are ranked and refined by it;
        ``return_designs`` gives the :class:`~genoseq.tasks.generation.Designs` (oracle
        probabilities, rejections) instead of the sequences.
        """
        from genoseq.design import DesignConstraints
        from genoseq.tasks.generation import SampleOptions, sample_designs

        forbid = options.pop("forbid", None) or ()
        constraints = DesignConstraints(gc_min=options.pop("gc_min", None), gc_max=options.pop("gc_max", None),
                                        forbidden=(forbid,) if isinstance(forbid, str) else tuple(forbid),
                                        max_homopolymer=options.pop("max_homopolymer", None))
        try:
            sample = SampleOptions(prompt=prompt, max_new_tokens=max_new_tokens, num_samples=num_samples,
                                   constraints=constraints, **options)
        except TypeError as err:
            raise InputError(f"generate: {err}") from None
        if oracle is not None and not isinstance(oracle, Classifier):
            oracle = load(oracle, device=str(self.device))
        designs = sample_designs(self.model, sample, oracle=None if oracle is None else oracle.model, progress=progress)
        return designs if return_designs else designs.sequences


class Annotator(_Labeller):
    """A per-base annotator (:class:`~genoseq.models.segmenter.Segmenter`, in ``.model``) from
    ``genoseq annotate fit``: the features ``genoseq annotate predict`` and ``POST /v1/annotate`` give."""

    def __repr__(self) -> str:
        return f"Annotator({str(self.path)!r}, classes={self.classes})"

    def annotate(self, seqs: Sequences, *, names: Sequence[str] | None = None, min_gene_length: int = 90):
        """Predicted features and per-base probabilities of each sequence: a
        :class:`~genoseq.tasks.genome_annotation.ContigAnnotation` (``.features``, ``.probs`` (2, L, K):
        row 0 the + strand) for one sequence, a list for several."""
        from genoseq.tasks.genome_annotation import annotate_sequences

        items, one = _many(seqs)
        found = annotate_sequences(self.model, items, names, decode_options={"min_gene_length": min_gene_length})
        return found[0] if one else found


class Classifier(_Labeller):
    """A sequence classifier (:class:`~genoseq.models.classifier.SequenceClassifier`, in ``.model``),
    or a regression model of numeric targets (``classify fit --task regression``)."""

    @property
    def targets(self) -> list[str]:
        """The regression targets, in the order of :meth:`predict`'s values (empty for a classifier)."""
        return list(self.model.targets)

    @property
    def task(self) -> str:
        return self.model.task

    def __repr__(self) -> str:
        if self.model.is_regression:
            return f"Classifier({str(self.path)!r}, task='regression', targets={self.targets})"
        return f"Classifier({str(self.path)!r}, classes={self.classes})"

    def predict_proba(self, seqs: Sequences, *, batch_size: int = 32) -> np.ndarray:
        """Class probabilities, as ``genoseq classify predict``: (C,) for one sequence, (n, C) for a list."""
        items, one = _many(seqs)
        proba = self.model.predict_proba(items, batch_size=batch_size)
        return proba[0] if one else proba

    def predict(self, seqs: Sequences, *, batch_size: int = 32) -> "str | list[str] | np.ndarray":
        """The most probable class of each sequence; for a regression model the predicted values,
        as ``genoseq classify predict`` writes them: (T,) for one sequence, (n, T) for a list."""
        items, one = _many(seqs)
        if self.model.is_regression:
            values = self.model.predict_values(items, batch_size=batch_size)
            return values[0] if one else values
        labels = [self.classes[int(i)] for i in self.model.predict_proba(items, batch_size=batch_size).argmax(1)]
        return labels[0] if one else labels

    def attributions(self, seqs: Sequences, *, method: str = "ig", class_name: "str | Sequence[str] | None" = None,
                     score: str = "logit", baseline: str = "shuffle", n_shuffles: int = 10, n_steps: int = 20,
                     batch_size: int = 64, seed: int = 0):
        """Per-base attributions of the predicted (or ``class_name``'s) class, as ``genoseq interpret
        attributions``: :class:`~genoseq.tasks.interpret.attribution.Attributions` (one (L, 4)
        ``contributions`` / ``hypothetical`` matrix per sequence; ``method`` ``ism``, ``ig`` or
        ``deepliftshap``)."""
        from genoseq.tasks.interpret.attribution import classifier_attributions

        items, _ = _many(seqs)
        return classifier_attributions(self.model, items, method=method, class_name=class_name, score=score,
                                       baseline=baseline, n_shuffles=n_shuffles, n_steps=n_steps,
                                       batch_size=batch_size, seed=seed)


class Aligner:
    """An embedding read index (``genoseq align index``) with its reference, ready to map reads."""

    def __init__(self, index: str | os.PathLike, device: str = "auto") -> None:
        from genoseq.tasks.align import Aligner as Engine

        self.path = Path(index)
        self.engine = Engine.open(index, device=device)
        self._header = None

    def __repr__(self) -> str:
        return f"Aligner({str(self.path)!r})"

    def map(self, reads: "str | Iterable[str | tuple[str, str] | tuple[str, str, str | None]]", **options):
        """Map reads (a sequence, ``(name, sequence)`` or ``(name, sequence, qualities)``; one or a
        list) as ``genoseq align map`` does: one :class:`~genoseq.tasks.align.AlignedRead` each.
        ``options`` are ``align map``'s mapping options (``top_k``, ``flank``, ``max_error_rate``...)."""
        one = isinstance(reads, str) or (isinstance(reads, tuple) and len(reads) in (2, 3) and isinstance(reads[1], str))
        items = []
        for i, r in enumerate([reads] if one else reads):
            if isinstance(r, str):
                r = (f"read{i + 1}", r, None)
            items.append((r[0], r[1], r[2] if len(r) > 2 else None))
        engine = self.engine.with_options(**options) if options else self.engine
        found = engine.map(items)
        return found[0] if one else found

    def to_sam(self, records) -> list[str]:
        """The SAM lines of mapped reads, as ``genoseq align map`` writes them."""
        import pysam

        if self._header is None:
            self._header = pysam.AlignmentHeader.from_dict(self.engine.sam_header("genoseq.load"))
        return [r.to_segment(self._header).to_string() for r in records]


def _as_variant(v) -> "Variant":
    from genoseq.tasks.variants import Variant

    if isinstance(v, Variant):
        return v
    try:
        chrom, pos, ref, alt = v
    except (TypeError, ValueError):
        raise InputError(f"a variant is (chrom, pos, ref, alt) or a Variant, got {v!r}", field="variants") from None
    return Variant(str(chrom), int(pos), str(ref), str(alt))


def _as_genome(genome) -> "Genome":
    from genoseq.genome import Genome, MemoryGenome, open_genome

    if isinstance(genome, Genome):
        return genome
    if isinstance(genome, dict):
        return MemoryGenome(genome)
    return open_genome(genome)


__all__ = ["Aligner", "Classifier", "LanguageModel", "load"]
