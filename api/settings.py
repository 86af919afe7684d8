"""What a genoseq API server loads and the limits it enforces.

Plain dataclasses with no heavy imports: ``genoseq serve`` builds them while parsing options,
and a multi-worker server passes them to its worker processes as JSON.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from dataclasses import dataclass, field

from genoseq.runtime import require_file

DEFAULT_CHUNK = 8192  # bounds the context when no chunk size is given


@dataclass(frozen=True)
class Limits:
    """Per-request limits; a request over one gets a 4xx naming the field and the limit."""

    max_sequence_length: int = 100_000  # bases per sequence (score, embed, classify, variants, align)
    max_sequences: int = 64  # sequences per request (score, embed, classify)
    max_reads: int = 512  # reads per /v1/align request (genoseq align map's batch size)
    max_variants: int = 1024  # variants per request
    max_body_bytes: int = 8 * 1024 * 1024  # request body; larger bodies get 413
    max_new_tokens: int = 2000  # bases per design (generate)
    max_designs: int = 64  # designs per request (generate)
    max_batch_rows: int = 16  # sequences of equal length scored in one forward pass
    max_interpret_length: int = 1000  # bases per sequence of /v1/interpret (an L x 4 or L x L answer)
    max_interpret_sequences: int = 4  # sequences per /v1/interpret request

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if getattr(self, f.name) < 1:
                raise ValueError(f"limit {f.name} must be >= 1, got {getattr(self, f.name)}")


@dataclass(frozen=True)
class ApiSettings:
    """Models to load (folders and files) and how to run them.

    Args:
        model: Released language model folder (scoring, embeddings, variant effects).
        classifier: Classifier folder from ``genoseq classify fit`` (``/v1/classify``; also the
            oracle of ``/v1/generate``).
        generator: Conditional model folder from ``genoseq generate fit`` (or any released
            language model) for ``/v1/generate``.
        reference: Reference genome (FASTA or token store) for variants given by contig.
        index: Read index folder from ``genoseq align index`` (``/v1/align``); its reference
            FASTA is read from where the index's manifest says.
        segmenter: Segmenter folder from ``genoseq annotate fit`` (``/v1/annotate``).
        device: ``auto``, ``cpu``, ``cuda:0``, ...
        chunk_size, context, window_batch_size: long-sequence scoring, as ``genoseq score``.
        api_key: The key clients send in ``X-API-Key``; None turns authentication off.
        limits: Request limits.
        batch_wait_ms: How long a sequence sent to ``/v1/score`` or ``/v1/embed`` may wait for
            others to share its forward pass (0: only those that queued while the model was busy).
        max_batch_tokens: Most tokens gathered into one batch (a longer sequence runs alone).
        max_queue: Most sequences waiting for the scoring (and for the embedding) batcher, and
            most other requests waiting for the model; past that a request gets 503 with
            ``Retry-After``.
        threads: Torch threads of the model (None: leave torch's setting).
    """

    model: str
    classifier: str | None = None
    generator: str | None = None
    reference: str | None = None
    index: str | None = None
    segmenter: str | None = None
    device: str = "auto"
    chunk_size: int | None = None  # None: the model's own (``inference.scoring_window``), as ``genoseq score``
    context: int | None = None
    window_batch_size: int = 4
    api_key: str | None = field(default=None, repr=False)
    limits: Limits = field(default_factory=Limits)
    batch_wait_ms: float = 5.0
    max_batch_tokens: int = 8192
    max_queue: int = 512
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if self.batch_wait_ms < 0 or self.max_batch_tokens < 1 or self.max_queue < 1:
            raise ValueError(f"need batch_wait_ms >= 0, max_batch_tokens >= 1 and max_queue >= 1; got "
                             f"{self.batch_wait_ms}, {self.max_batch_tokens}, {self.max_queue}")
        if (self.chunk_size is not None and self.chunk_size < 2) or (
            self.context is not None and not 0 <= self.context < (self.chunk_size or DEFAULT_CHUNK)
        ):
            raise ValueError(f"need chunk_size >= 2 and 0 <= context < chunk_size; got {self.chunk_size}, {self.context}")
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("api_key is empty")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "ApiSettings":
        data = json.loads(text)
        data["limits"] = Limits(**data.get("limits", {}))
        return cls(**data)


def default_threads(workers: int = 1) -> int:
    """Torch threads per worker of ``genoseq serve``: the usable cores shared by the workers, at
    least 1. The forward passes are the work; the event loop (HTTP, JSON) takes little beside
    them. On an idle 2-core machine two threads served 1.7x the requests of one (20.3 against
    12.0 requests/s, 64 clients on the same machine, benchmarks/results/2026-12-07-api); on a
    machine busy with other jobs, one thread did better: pass ``--threads`` there."""
    import os

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // workers)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name other than localhost: may resolve anywhere
        return False


def read_api_key(api_key: str | None = None, api_key_file: str | None = None) -> str | None:
    """The configured key: given directly or as the first line of a file (not both)."""
    from genoseq.errors import InputError

    if api_key is not None and api_key_file is not None:
        raise InputError("give --api_key or --api_key_file, not both")
    if api_key_file is not None:
        path = require_file(api_key_file, kind="file")
        lines = path.read_text().splitlines()
        key = lines[0].strip() if lines else ""
        if not key:
            raise InputError("the API key file is empty", path=str(path))
        return key
    if api_key is not None and not api_key.strip():
        raise InputError("--api_key is empty")
    return api_key
