"""The models a server holds and the one thread that runs them.

:class:`ModelService` loads the models named by :class:`~genoseq.api.settings.ApiSettings` once
(at startup, in a background thread, so ``/healthz`` answers while they load) and runs every
model call on a single dedicated worker thread: the event loop never blocks on torch, and two
requests never run forward passes on the same weights at the same time (which on a CPU would
only split the same cores between them, and on a GPU would compete for its memory).

Concurrent ``/v1/score`` requests are batched by :class:`ScoreBatcher`: while the worker is
busy, new sequences queue up; the next time it is free, every queued sequence of the same
length (up to ``max_batch_rows``) goes through the model in one forward pass. An idle server
therefore adds no waiting, and a busy one turns many small passes into a few larger ones.
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
        self.batcher: ScoreBatcher | None = None

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
        """Start loading (in the worker thread) and the score batcher; wait unless ``background``."""
        self.batcher = ScoreBatcher(self)
        future = asyncio.get_running_loop().run_in_executor(self._executor, self.load)
        if not background:
            await future

    async def stop(self) -> None:
        if self.batcher is not None:
            await self.batcher.stop()
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
        """Run ``fn`` on the model thread without blocking the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    @property
    def model_name(self) -> str:
        return Path(self.settings.model).name


# ---------------------------------------------------------------------- scoring
@dataclass
class _Pending:
    ids: "torch.Tensor"  # 1-D int64
    future: asyncio.Future


class ScoreBatcher:
    """Collects sequences from concurrent score requests and scores them together.

    Each sequence's result is exactly what ``genoseq score`` computes for it
    (:func:`~genoseq.models.inference.token_log_probs` with the server's ``chunk_size`` and
    ``context``). Sequences that fit one window of a non-recurrent model are stacked by length
    into batches of up to ``max_batch_rows`` rows; the rest are scored one by one.
    """

    def __init__(self, service: ModelService) -> None:
        self.service = service
        self.queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self.max_rows = service.settings.limits.max_batch_rows
        self.batches = 0  # forward passes of stacked rows, for /v1/models and tests
        self.batched_rows = 0
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="genoseq-score-batcher")

    async def score(self, ids: "torch.Tensor") -> "torch.Tensor":
        """Token log-probs (L-1,) of one sequence of token ids."""
        future = asyncio.get_running_loop().create_future()
        await self.queue.put(_Pending(ids, future))
        return await future

    async def stop(self) -> None:
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        while not self.queue.empty():
            pending = self.queue.get_nowait()
            if not pending.future.done():
                pending.future.set_exception(NotReady("the server is shutting down"))

    async def _loop(self) -> None:
        while True:
            items = [await self.queue.get()]
            while not self.queue.empty():
                items.append(self.queue.get_nowait())
            items = [it for it in items if not it.future.done()]  # the client may have gone
            if not items:
                continue
            try:
                results = await self.service.run(self._compute, [it.ids for it in items])
            except Exception as err:  # noqa: BLE001 - handed to every waiting request
                results = [err] * len(items)
            for item, result in zip(items, results):
                if item.future.done():
                    continue
                if isinstance(result, BaseException):
                    item.future.set_exception(result)
                else:
                    item.future.set_result(result)

    def _compute(self, sequences: list["torch.Tensor"]) -> list:
        """Runs on the model thread: one result (tensor or exception) per sequence.

        All of them together first (:func:`genoseq.tasks.scoring.log_probs_many`); if that
        fails, one by one, so that one request's failure is not every request's.
        """
        from genoseq.tasks.scoring import log_probs_many

        s, lm = self.service.settings, self.service.lm
        options = dict(chunk_size=s.chunk_size, context=s.context, batch_size=s.window_batch_size,
                       max_rows=self.max_rows, device=self.service.device)
        try:
            return log_probs_many(lm, sequences, **options, on_batch=self._count)
        except Exception:  # noqa: BLE001 - retried alone below
            results = []
            for ids in sequences:
                try:
                    results.extend(log_probs_many(lm, [ids], **options, on_batch=self._count))
                except Exception as err:  # noqa: BLE001 - handed to its request
                    results.append(err)
            return results

    def _count(self, rows: int) -> None:
        self.batches += 1
        self.batched_rows += rows
