"""``genoseq serve``: the REST API (:mod:`genoseq.api`) on uvicorn.

Nothing heavy is imported at module level (no torch, no FastAPI), so building the CLI parser
stays fast.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from pathlib import Path

from genoseq.errors import InputError
from genoseq.runtime import require_file

API_KEY_ENV = "GENOSEQ_API_KEY"


def _check_model_dir(path: str | None, option: str) -> None:
    if path is None:
        return
    p = Path(path)
    if not p.is_dir():
        raise InputError(f"{option}: not a model directory", path=str(p))
    if not (p / "config.json").is_file():
        raise InputError(f"{option}: no config.json (not a released genoseq model)", path=str(p))


def serve(
    model: str,
    classifier: str | None = None,
    generator: str | None = None,
    reference: str | None = None,
    index: str | None = None,
    segmenter: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    api_key: str | None = None,
    api_key_file: str | None = None,
    no_auth: bool = False,
    device: str = "auto",
    chunk_size: int | None = None,
    context: int | None = None,
    max_sequence_length: int = 100_000,
    max_sequences: int = 64,
    max_reads: int = 512,
    max_variants: int = 1024,
    max_body_bytes: int = 8 * 1024 * 1024,
    max_new_tokens: int = 2000,
    max_designs: int = 64,
    max_batch_rows: int = 16,
    max_interpret_length: int = 1000,
    max_interpret_sequences: int = 4,
    batch_wait_ms: float = 5.0,
    max_batch_tokens: int = 8192,
    max_queue: int = 512,
    shutdown_timeout: float = 60.0,
    threads: int | None = None,
    log_level: str = "info",
) -> None:
    """Serve the models over HTTP: /v1/score, /v1/embed, /v1/variants, /v1/classify, /v1/generate, /v1/align,
    /v1/annotate, /v1/interpret.

    The models are loaded once per worker process. Docs at ``http://HOST:PORT/docs``;
    ``/healthz`` answers while they load, ``/readyz`` once they are loaded.

    Concurrent /v1/score and /v1/embed requests are batched: their sequences are gathered for up
    to ``--batch_wait_ms`` into forward passes of at most ``--max_batch_tokens`` and answered
    separately, each as it would be alone. Past ``--max_queue`` waiting sequences a request gets
    503 with ``Retry-After``. On SIGTERM (or Ctrl-C) the server stops accepting connections,
    answers the requests in flight (for up to ``--shutdown_timeout`` seconds) and exits.

    Authentication: clients send ``X-API-Key``; the key is ``--api_key``, the first line of
    ``--api_key_file`` or ``$GENOSEQ_API_KEY``. Without a key the API is open, which is allowed
    only on a loopback host (127.0.0.1, ::1, localhost) unless ``--no_auth`` says so explicitly.

    Args:
        model: Released language model folder (``RUN_DIR/model`` from ``genoseq pretrain``).
        classifier: Classifier folder (``genoseq classify fit``): /v1/classify and the design oracle.
        generator: Conditional model folder (``genoseq generate fit``): /v1/generate.
        reference: Reference genome (FASTA or token store) for variants given by contig.
        index: Read index folder (``genoseq align index``): /v1/align maps reads as ``genoseq align map``.
        segmenter: Segmenter folder (``genoseq annotate fit``): /v1/annotate.
        host: Address to bind (default loopback only).
        port: Port to bind.
        workers: Worker processes (each loads its own copy of the models).
        api_key: The API key (visible in the process list: prefer ``--api_key_file``).
        api_key_file: File whose first line is the API key.
        no_auth: Serve without a key on a non-loopback host.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda:0``...
        chunk_size: Tokens per forward pass for long sequences (as ``genoseq score``; default:
            the model's training window).
        context: Minimum context of every scored base (as ``genoseq score``; default: an
            eighth of the window, at least 256 bases, at most a quarter).
        max_sequence_length: Longest sequence accepted (bases).
        max_sequences: Most sequences per request.
        max_reads: Most reads per /v1/align request.
        max_variants: Most variants per request.
        max_body_bytes: Largest request body (larger: 413).
        max_new_tokens: Longest design (new bases) per /v1/generate request.
        max_designs: Most designs per /v1/generate request.
        max_batch_rows: Most sequences of equal length scored in one forward pass.
        max_interpret_length: Longest sequence of a /v1/interpret request (bases).
        max_interpret_sequences: Most sequences per /v1/interpret request.
        batch_wait_ms: How long a /v1/score or /v1/embed sequence may wait for others to share
            its forward pass (0: only those that queued while the model was busy).
        max_batch_tokens: Most tokens gathered into one batch.
        max_queue: Most sequences waiting for the model per batched route (and most other
            requests waiting); past that: 503 with Retry-After.
        shutdown_timeout: On SIGTERM, how long requests in flight may take before the server
            exits anyway (seconds).
        threads: Torch threads per worker (default: ``$OMP_NUM_THREADS`` if set, else the cores
            shared by the workers, at least 1; on a machine busy with other jobs fewer threads
            than cores can serve more).
        log_level: uvicorn and genoseq.api log level.
    """
    # Over 80 lines for its signature and Args, which are the command's options and help.
    from genoseq.api.settings import ApiSettings, Limits, default_threads, is_loopback, read_api_key

    for path, option in ((model, "--model"), (classifier, "--classifier"), (generator, "--generator"),
                         (segmenter, "--segmenter")):
        _check_model_dir(path, option)
    if reference is not None:
        require_file(reference, kind="file")
    if index is not None:
        from genoseq.tasks.align import MANIFEST_FILE

        if not (Path(index) / MANIFEST_FILE).is_file():
            raise InputError(f"--index: not a genoseq align index (no {MANIFEST_FILE})", path=str(index))
    if workers < 1:
        raise InputError(f"--workers must be >= 1, got {workers}")
    if shutdown_timeout <= 0:
        raise InputError(f"--shutdown_timeout must be > 0, got {shutdown_timeout}")
    key = read_api_key(api_key, api_key_file)
    if key is None and os.environ.get(API_KEY_ENV):
        key = os.environ[API_KEY_ENV].strip()
    if key is None and not is_loopback(host) and not no_auth:
        raise InputError(f"refusing to serve without an API key on {host} (not a loopback address): give "
                         f"--api_key_file (or --api_key, ${API_KEY_ENV}), or --no_auth true to serve it open")
    if threads is None and not os.environ.get("OMP_NUM_THREADS"):  # torch follows $OMP_NUM_THREADS when set
        threads = default_threads(workers)
    try:
        limits = Limits(max_sequence_length=max_sequence_length, max_sequences=max_sequences, max_reads=max_reads,
                        max_variants=max_variants, max_body_bytes=max_body_bytes, max_new_tokens=max_new_tokens,
                        max_designs=max_designs, max_batch_rows=max_batch_rows,
                        max_interpret_length=max_interpret_length, max_interpret_sequences=max_interpret_sequences)
        settings = ApiSettings(model=model, classifier=classifier, generator=generator, reference=reference,
                               index=index, segmenter=segmenter, device=device, chunk_size=chunk_size, context=context, api_key=key,
                               limits=limits, batch_wait_ms=batch_wait_ms, max_batch_tokens=max_batch_tokens,
                               max_queue=max_queue, threads=threads)
    except ValueError as err:
        raise InputError(str(err)) from None

    import uvicorn

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(f"genoseq serve: http://{host}:{port} (docs at /docs; authentication "
          f"{'on' if key else 'off'}; {workers} worker{'s' if workers > 1 else ''})", file=sys.stderr)
    # genoseq.api.access logs requests. On SIGTERM uvicorn closes the socket, waits for the
    # requests in flight (at most shutdown_timeout s), then runs the app's shutdown.
    common = dict(host=host, port=port, log_level=log_level, access_log=False,
                  timeout_graceful_shutdown=math.ceil(shutdown_timeout))
    if workers == 1:
        from genoseq.api import create_app

        uvicorn.run(create_app(settings, load_in_background=False), **common)
    else:
        from genoseq.api.app import SETTINGS_ENV

        os.environ[SETTINGS_ENV] = settings.to_json()
        uvicorn.run("genoseq.api.app:app_from_environment", factory=True, workers=workers, **common)
