"""The models a server holds and the one thread that runs them.

:class:`ModelService` loads the models named by :class:`~genoseq.api.settings.ApiSettings` once
(at startup, in a background thread, so ``/healthz`` answers while they load) and runs every
model call on a single dedicated worker thread: the event loop never blocks on torch, and two
requests never run forward passes on the same weights at the same time (which on a CPU would
only split the same cores between them, and on a GPU would compete for its memory).

Concurrent ``/v1/score`` and ``/v1/embed`` requests are batched dynamically
(:class:`~genoseq.api.batching.DynamicBatcher`): their sequences are gathered for up to
``batch_wait_ms`` (and at most ``max_batch_tokens``), then run together on the model thread,
sequences of equal length in one forward pass (up to ``max_batch_rows``), and answered
separately, each exactly as it would be alone. At most ``max_queue`` sequences (score, embed)
and ``max_queue`` other model calls wait; past that a request gets 503 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from .batching import DynamicBatcher, Overloaded, ShuttingDown
from .settings import ApiSettings

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from genoseq.genome import Genome
    from genoseq.models.classifier import SequenceClassifier
    from genoseq.models.lm import GenoSeqLM
    from genoseq.tasks.align import Aligner

log = logging.getLogger("genoseq.api")
R = TypeVar("R")


class NotReady(RuntimeError):
    """The models are still loading, or failed to load (the server answers 503)."""


class NotLoaded(LookupError):
    """A route needs a model the server was not started with (the server answers 404)."""


@dataclass
class GeneratorInfo:
    """The generator ``/v1/generate`` samples from, and what ``/v1/models`` says of it."""

    path: str
    conditions: list[str]
    config: dict
    parameters: int
    lm: "GenoSeqLM"


class ModelService:
    """Loaded models, their state, and the worker thread that runs them."""

    def __init__(self, settings: ApiSettings) -> None:
        self.settings = settings
        self.status = "loading"  # -> "ready" | "failed"
        self.error: str | None = None
        self.lm: GenoSeqLM | None = None
        self.classifier: SequenceClassifier | None = None
        self.generator: GeneratorInfo | None = None
        self.reference: Genome | None = None
        self.aligner: Aligner | None = None  # /v1/align: the index, its reference, default mapping options
        self.align_header = None  # pysam.AlignmentHeader of the index's contigs (SAM lines)
        self.segmenter = None  # /v1/annotate: a genoseq.models.segmenter.Segmenter
        self.device: torch.device | None = None
        self.load_seconds: float | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="genoseq-model")
        self._loaded = threading.Event()
        self.scoring: DynamicBatcher | None = None  # /v1/score
        self.embedding: DynamicBatcher | None = None  # /v1/embed
        self.forward_passes = 0  # stacked forward passes of scoring, for /v1/models and tests
        self.forward_rows = 0
        self._waiting_calls = 0  # model calls of other routes queued or running (bounded by max_queue)
        self._closing = False

    # ------------------------------------------------------------------ loading
    def load(self) -> None:
        """Load every configured model (blocking). Sets ``status`` to ready or failed."""
        started = time.perf_counter()
        try:
            self._load()
        except Exception as err:  # reported by /readyz; the server keeps answering /healthz
            self.status, self.error = "failed", f"{type(err).__name__}: {err}"
            log.error("loading models failed: %s", self.error)
        else:
            self.status = "ready"
            self.load_seconds = round(time.perf_counter() - started, 3)
            log.info("models loaded in %.2f s on %s", self.load_seconds, self.device)
        finally:
            self._loaded.set()

    def _load(self) -> None:
        from genoseq.genome import open_genome
        from genoseq.models.lm import GenoSeqLM
        from genoseq.runtime import resolve_device

        s = self.settings
        if s.threads is not None:
            import torch

            torch.set_num_threads(s.threads)
        self.device = resolve_device(s.device)
        self.lm = GenoSeqLM.from_pretrained(s.model, map_location=self.device).eval()
        if s.classifier is not None:
            from genoseq.models.classifier import SequenceClassifier

            self.classifier = SequenceClassifier.from_pretrained(s.classifier, map_location=self.device).eval()
        if s.generator is not None:
            generator = GenoSeqLM.from_pretrained(s.generator, map_location=self.device).eval()
            self.generator = GeneratorInfo(s.generator, list(generator.tokenizer.condition_labels),
                                           generator.config.to_dict(), sum(p.numel() for p in generator.parameters()),
                                           generator)
        if s.reference is not None:
            self.reference = open_genome(s.reference)
        if s.segmenter is not None:
            from genoseq.models.segmenter import Segmenter

            self.segmenter = Segmenter.from_pretrained(s.segmenter, map_location=self.device).eval()
        if s.index is not None:
            import pysam

            from genoseq.tasks.align import Aligner

            # What `genoseq align map` loads: the index, its encoder and its reference in memory.
            self.aligner = Aligner.open(s.index, device=self.device)
            self.align_header = pysam.AlignmentHeader.from_dict(self.aligner.sam_header("POST /v1/align"))

    async def start(self, background: bool = True) -> None:
        """Start loading (in the worker thread) and the batchers; wait unless ``background``."""
        s = self.settings
        options = dict(max_wait_s=s.batch_wait_ms / 1000, max_batch_tokens=s.max_batch_tokens, max_queue=s.max_queue)
        self.scoring = DynamicBatcher(self._score_batch, self._execute, name="scoring", **options)
        self.embedding = DynamicBatcher(self._embed_batch, self._execute, name="embedding", **options)
        future = asyncio.get_running_loop().run_in_executor(self._executor, self.load)
        if not background:
            await future

    async def stop(self) -> None:
        """Finish what is queued for the model (requests in flight get their answers), then let go."""
        self._closing = True
        for batcher in (self.scoring, self.embedding):
            if batcher is not None:
                await batcher.stop()
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self.reference is not None:
            self.reference.close()

    def wait_loaded(self, timeout: float | None = None) -> bool:
        return self._loaded.wait(timeout)

    # ------------------------------------------------------------------ running
    def require_ready(self) -> None:
        if self.status == "loading":
            raise NotReady("the models are still loading; retry shortly")
        if self.status == "failed":
            raise NotReady(f"the models failed to load: {self.error}")

    async def run(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        """Run ``fn`` on the model thread without blocking the event loop.

        :class:`~genoseq.api.batching.Overloaded` (503) when ``max_queue`` calls are already
        queued or running there.
        """
        if self._closing:
            raise ShuttingDown("the server is shutting down")
        if self._waiting_calls >= self.settings.max_queue:
            raise Overloaded(f"the server is busy ({self._waiting_calls} requests waiting for the model); retry later",
                             retry_after=1)
        self._waiting_calls += 1
        try:
            return await self._execute(fn, *args, **kwargs)
        finally:
            self._waiting_calls -= 1

    async def _execute(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def score(self, sequences: list["torch.Tensor"]) -> list["torch.Tensor"]:
        """Token log-probs (L-1,) of each sequence of token ids (1-D int64), batched with other requests'."""
        return await self.scoring.submit(sequences, [ids.numel() for ids in sequences])

    async def embed(self, sequences: list, options: tuple) -> list:
        """Pooled vectors of token-id arrays; ``options`` = (layer, pooling, rc_average, rc_concat)."""
        return await self.embedding.submit(sequences, [len(ids) for ids in sequences], group=options)

    @property
    def model_name(self) -> str:
        return Path(self.settings.model).name


    # ------------------------------------------------------------------ batched work (model thread)
    def _score_batch(self, group, sequences: list["torch.Tensor"]) -> list:
        """:func:`genoseq.tasks.scoring.log_probs_many` with the server's ``chunk_size`` and ``context``:
        what ``genoseq score`` computes for each sequence; equal lengths share a forward pass."""
        from genoseq.tasks.scoring import log_probs_many

        s = self.settings
        return log_probs_many(self.lm, sequences, chunk_size=s.chunk_size, context=s.context,
                              batch_size=s.window_batch_size, max_rows=s.limits.max_batch_rows, device=self.device,
                              on_batch=self._count_pass)

    def _embed_batch(self, options: tuple, sequences: list) -> list:
        """:class:`genoseq.models.embedding.Embedder` vectors, one call per length, so that no
        sequence is padded to another's length (its vector is the one it gets alone)."""
        from genoseq.models.embedding import Embedder

        layer, pooling, rc_average, rc_concat = options
        embedder = Embedder(self.lm, layer=layer, pooling=pooling, rc_average=rc_average, rc_concat=rc_concat,
                            batch_size=self.settings.limits.max_batch_rows, device=self.device)
        by_length: dict[int, list[int]] = {}
        for i, ids in enumerate(sequences):
            by_length.setdefault(len(ids), []).append(i)
        out: list = [None] * len(sequences)
        for rows in by_length.values():
            for i, vector in zip(rows, embedder.embed([sequences[i] for i in rows])):
                out[i] = vector
        return out

    def _count_pass(self, rows: int) -> None:
        self.forward_passes += 1
        self.forward_rows += rows
