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
    """What ``/v1/generate`` needs to know before calling the sampling pipeline."""

    path: str
    conditions: list[str]
    config: dict
    parameters: int


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
            # Loaded once to check it and learn its condition labels; /v1/generate runs the
            # sampling pipeline on the folder (see routers/generate.py).
            generator = GenoSeqLM.from_pretrained(s.generator, map_location="cpu")
            self.generator = GeneratorInfo(s.generator, list(generator.tokenizer.condition_labels),
                                           generator.config.to_dict(), sum(p.numel() for p in generator.parameters()))
            del generator
        if s.reference is not None:
            self.reference = open_genome(s.reference)
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
def batched_log_probs(lm, batch: "torch.Tensor") -> "torch.Tensor":
    """``log P(x_t | x_<t)`` (B, L-1) for a batch (B, L) of equal-length sequences, one forward pass.

    For a sequence no longer than ``chunk_size`` (and a model with attention or Hyena layers),
    this is the single window :func:`genoseq.models.inference.token_log_probs` scores; batching
    rows only changes float rounding.
    """
    import torch

    device = next(lm.parameters()).device
    with torch.inference_mode():
        ids = batch.to(device)
        logits = lm(ids)[:, :-1]
        log_probs = torch.log_softmax(logits.float(), dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    return log_probs.cpu()


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
        """Runs on the model thread: one result (tensor or exception) per sequence."""
        import torch

        from genoseq.models.inference import scoring_window, token_log_probs

        s, lm = self.service.settings, self.service.lm
        chunk_size, context = scoring_window(lm, s.chunk_size, s.context)
        results: list = [None] * len(sequences)
        by_length: dict[int, list[int]] = {}
        for i, ids in enumerate(sequences):
            n = ids.numel()
            if 2 <= n <= chunk_size and not lm.is_recurrent:
                by_length.setdefault(n, []).append(i)
            else:  # streamed state (Mamba2), several windows, or nothing to score
                try:
                    results[i] = token_log_probs(lm, ids, chunk_size=chunk_size, context=context,
                                                 batch_size=s.window_batch_size, device=self.service.device)
                except Exception as err:  # noqa: BLE001
                    results[i] = err
        for rows in by_length.values():
            for b in range(0, len(rows), self.max_rows):
                group = rows[b : b + self.max_rows]
                try:
                    log_probs = batched_log_probs(lm, torch.stack([sequences[i] for i in group]))
                except Exception as err:  # noqa: BLE001
                    for i in group:
                        results[i] = err
                    continue
                self.batches += 1
                self.batched_rows += len(group)
                for row, i in enumerate(group):
                    results[i] = log_probs[row]
        return results
