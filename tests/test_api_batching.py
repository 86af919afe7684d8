"""Dynamic batching of the API: the batcher alone (fake work) and the server with a tiny model.

Batched answers equal one-at-a-time answers exactly (several concurrent requests of different
lengths), a full queue gets 503 with Retry-After, an error in one request leaves the others of its
batch alone, and SIGTERM lets a real `genoseq serve` answer the requests in flight before it exits.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from genoseq.api import ApiSettings, Limits, create_app
from genoseq.api.batching import DynamicBatcher, Overloaded, ShuttingDown


# ---------------------------------------------------------------------- the batcher alone
class FakeModel:
    """compute(group, payloads): doubles each payload on a worker thread, records each batch,
    fails a whole batch that holds a negative number, and can be held until released."""

    def __init__(self) -> None:
        self.batches: list[tuple] = []
        self.release = threading.Event()
        self.release.set()
        self.pool = concurrent.futures.ThreadPoolExecutor(1)

    def compute(self, group, payloads):
        self.release.wait(10)
        self.batches.append((group, list(payloads)))
        if any(p < 0 for p in payloads):
            raise ValueError(f"negative input in {payloads}")
        return [2 * p for p in payloads]

    async def run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)


def batcher_test(fn):
    """Run ``await fn(fake, make)`` where ``make(**options)`` builds a batcher on ``fake``."""

    async def main():
        fake = FakeModel()
        made = []

        def make(**options):
            options = {"max_wait_s": 0.05, "max_batch_tokens": 100, "max_queue": 100} | options
            made.append(DynamicBatcher(fake.compute, fake.run, **options))
            return made[-1]

        try:
            await fn(fake, make)
        finally:
            fake.release.set()
            for b in made:
                await b.stop()
            fake.pool.shutdown()

    asyncio.run(main())


def test_concurrent_items_share_one_batch_by_group_and_answer_separately():
    async def body(fake, make):
        b = make()
        results = await asyncio.gather(b.submit([1, 2], [1, 1]), b.submit([3], [1]), b.submit([5], [1], group="other"),
                                       b.submit([4], [1]))
        assert results == [[2, 4], [6], [10], [8]]
        assert fake.batches == [(None, [1, 2, 3, 4]), ("other", [5])]  # oldest group first
        assert b.stats.batches == 2 and b.stats.items == 5 and b.stats.largest == 4

    batcher_test(body)


def test_batches_stop_at_max_batch_tokens_and_a_large_item_runs_alone():
    async def body(fake, make):
        b = make(max_batch_tokens=10)
        results = await asyncio.gather(*(b.submit([k], [4]) for k in range(5)), b.submit([9], [25]))
        assert results == [[0], [2], [4], [6], [8], [18]]
        assert [p for _, p in fake.batches] == [[0, 1], [2, 3], [4], [9]]

    batcher_test(body)


def test_an_idle_batcher_answers_after_at_most_the_wait():
    async def body(fake, make):
        b = make(max_wait_s=0.2)
        started = time.perf_counter()
        assert await b.submit([1], [1]) == [2]
        assert 0.15 < time.perf_counter() - started < 2
        b0 = make(max_wait_s=0)
        started = time.perf_counter()
        assert await b0.submit([1], [1]) == [2]
        assert time.perf_counter() - started < 0.15

    batcher_test(body)


def test_a_failing_item_fails_only_its_own_request():
    async def body(fake, make):
        b = make()
        good, bad, other = await asyncio.gather(b.submit([1, 2], [1, 1]), b.submit([-1], [1]), b.submit([3], [1]),
                                                return_exceptions=True)
        assert good == [2, 4] and other == [6]
        assert isinstance(bad, ValueError) and "[-1]" in str(bad)  # its own error, from its retry alone
        assert b.stats.retried_alone == 4 and fake.batches[0][1] == [1, 2, -1, 3]

    batcher_test(body)


def test_a_full_queue_refuses_with_retry_after_and_recovers():
    async def body(fake, make):
        b = make(max_wait_s=0, max_queue=3)
        fake.release.clear()  # the model is busy: what comes next waits
        running = asyncio.ensure_future(b.submit([1], [1]))
        await asyncio.sleep(0.05)  # taken by the batcher, blocked in compute
        waiting = asyncio.ensure_future(b.submit([2, 3], [1000, 1000]))
        await asyncio.sleep(0.01)
        with pytest.raises(Overloaded) as refused:
            await b.submit([4, 5], [1, 1])  # 2 waiting + 2 > 3
        assert refused.value.retry_after >= 1 and b.stats.refused == 2
        fake.release.set()
        assert await running == [2] and await waiting == [4, 6]
        assert await b.submit([7, 8, 9, 10], [1] * 4) == [14, 16, 18, 20]  # an empty queue takes a large request

    batcher_test(body)


def test_a_cancelled_request_is_not_computed():
    async def body(fake, make):
        b = make(max_wait_s=0.2)
        gone = asyncio.ensure_future(b.submit([1], [1]))
        await asyncio.sleep(0.01)
        gone.cancel()
        assert await b.submit([2], [1]) == [4]
        assert [p for _, p in fake.batches] == [[2]]

    batcher_test(body)


def test_stop_runs_what_is_queued_then_refuses():
    async def body(fake, make):
        b = make(max_wait_s=30)  # only stop() can end this wait
        queued = asyncio.ensure_future(b.submit([1, 2], [1, 1]))
        await asyncio.sleep(0.05)
        started = time.perf_counter()
        await b.stop()
        assert await queued == [2, 4] and time.perf_counter() - started < 5
        with pytest.raises(ShuttingDown):
            await b.submit([3], [1])

    batcher_test(body)


# ---------------------------------------------------------------------- the server
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """An untrained tiny Hyena + Mamba2 + attention model (its numbers only need to be deterministic)."""
    import torch

    from genoseq.models import GenoSeqLM, ModelConfig

    torch.manual_seed(0)
    model = GenoSeqLM(ModelConfig(d_model=32, pattern="HMA", n_heads=2, headdim=16, d_state=16, chunk_size=32,
                                  hyena_filter_len=512))
    out = tmp_path_factory.mktemp("batching") / "model"
    model.save_pretrained(out)
    return out


def settings_for(model_dir, **options) -> ApiSettings:
    return ApiSettings(model=str(model_dir), device="cpu", chunk_size=512, context=128,
                       limits=Limits(max_sequence_length=2000, max_sequences=8), **options)


def ready_client(settings):
    client = TestClient(create_app(settings, load_in_background=False), raise_server_exceptions=False)
    client.__enter__()
    return client


def random_sequences(lengths, seed=0) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["".join("ACGT"[k] for k in rng.integers(0, 4, n)) for n in lengths]


# Different lengths, some equal (those share a forward pass), one longer than chunk_size (several windows).
LENGTHS = [300, 120, 300, 77, 300, 120, 900, 2, 300, 45]


def test_batched_answers_equal_one_at_a_time(model_dir):
    seqs = random_sequences(LENGTHS)
    client = ready_client(settings_for(model_dir, batch_wait_ms=300))
    try:
        alone_score = [client.post("/v1/score", json={"sequences": [s], "token_log_probs": True}).json()["scores"][0]
                       for s in seqs]
        alone_embed = [client.post("/v1/embed", json={"sequences": [s], "pooling": "mean+last"}).json()["embeddings"][0]
                       for s in seqs]
        before = client.get("/v1/models").json()
        with concurrent.futures.ThreadPoolExecutor(len(seqs)) as pool:
            scored = list(pool.map(lambda s: client.post("/v1/score", json={"sequences": [s], "token_log_probs": True}),
                                   seqs))
            embedded = list(pool.map(lambda s: client.post("/v1/embed", json={"sequences": [s], "pooling": "mean+last"}),
                                     seqs))
            # one request of several sequences, batched with a concurrent one of the same lengths
            pair = list(pool.map(lambda ss: client.post("/v1/score", json={"sequences": ss}), [seqs[:4], seqs[4:8]]))
        after = client.get("/v1/models").json()
    finally:
        client.__exit__(None, None, None)
    assert all(r.status_code == 200 for r in scored + embedded + pair)
    for want, response in zip(alone_score, scored):
        assert response.json()["scores"][0] == want  # identical, not just close
    for want, response in zip(alone_embed, embedded):
        assert response.json()["embeddings"][0] == want
    assert [s["log_likelihood"] for r in pair for s in r.json()["scores"]] == \
        [s["log_likelihood"] for s in alone_score[:8]]
    score_stats = after["batching"]["score"]
    gathered = score_stats["batches"] - before["batching"]["score"]["batches"]
    assert gathered < len(seqs) + 2 and score_stats["largest_batch"] > 1  # requests shared batches
    assert after["scoring"]["batches"] - before["scoring"]["batches"] < len(seqs) + 8  # and forward passes
    assert after["batching"]["embed"]["largest_batch"] > 1


def test_full_queue_gets_503_with_retry_after(model_dir):
    seqs = random_sequences([200, 200, 200])
    client = ready_client(settings_for(model_dir, batch_wait_ms=3000, max_queue=2))
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            first = pool.submit(client.post, "/v1/score", json={"sequences": seqs[:2]})  # fills the queue and waits
            deadline = time.monotonic() + 10
            while client.get("/v1/models").json()["batching"]["score"]["queued"] < 2:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            refused = client.post("/v1/score", json={"sequences": seqs[2:]})
            embed_ok = client.post("/v1/embed", json={"sequences": seqs[2:]})  # its own queue
            assert first.result(timeout=30).status_code == 200
        info = client.get("/v1/models").json()["batching"]
    finally:
        client.__exit__(None, None, None)
    assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 1
    assert "busy" in refused.json()["detail"]
    assert embed_ok.status_code == 200 and info["score"]["refused"] == 1


def test_an_error_in_one_request_leaves_the_rest_of_its_batch(model_dir, monkeypatch):
    import genoseq.tasks.scoring as scoring

    real = scoring.log_probs_many

    def failing_on_length_13(model, sequences, **options):
        if any(ids.numel() == 13 for ids in sequences):
            raise RuntimeError("boom")
        return real(model, sequences, **options)

    monkeypatch.setattr(scoring, "log_probs_many", failing_on_length_13)
    seqs = random_sequences([100, 13, 100, 50], seed=3)
    client = ready_client(settings_for(model_dir, batch_wait_ms=300))
    try:
        with concurrent.futures.ThreadPoolExecutor(len(seqs)) as pool:
            responses = list(pool.map(lambda s: client.post("/v1/score", json={"sequences": [s]}), seqs))
        alone = [client.post("/v1/score", json={"sequences": [s]}) for s in seqs]
        stats = client.get("/v1/models").json()["batching"]["score"]
    finally:
        client.__exit__(None, None, None)
    assert [r.status_code for r in responses] == [200, 500, 200, 200] == [r.status_code for r in alone]
    assert "boom" not in responses[1].text  # a plain 500, logged on the server
    assert all(r.json() == a.json() for r, a in zip(responses, alone) if r.status_code == 200)
    assert stats["retried_alone"] >= 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sigterm_answers_requests_in_flight_then_exits(model_dir):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "genoseq.cli", "serve", "--model", str(model_dir), "--port", str(port),
                             "--device", "cpu", "--chunk_size", "512", "--context", "128", "--batch_wait_ms", "1000",
                             "--max_batch_tokens", "100000"],
                            env=dict(os.environ, OMP_NUM_THREADS="1"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seqs = random_sequences([150, 150, 90], seed=5)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.communicate()[0].decode()
            assert time.monotonic() < deadline, "server not ready"
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        expected = [httpx.post(f"{base}/v1/score", json={"sequences": [s]}, timeout=30).json() for s in seqs]
        with concurrent.futures.ThreadPoolExecutor(len(seqs)) as pool:
            pending = [pool.submit(httpx.post, f"{base}/v1/score", json={"sequences": [s]}, timeout=30) for s in seqs]
            while httpx.get(f"{base}/v1/models", timeout=5).json()["batching"]["score"]["queued"] < len(seqs):
                assert time.monotonic() < deadline
                time.sleep(0.02)
            proc.send_signal(signal.SIGTERM)  # while all three wait to be batched
            answers = [f.result(timeout=30) for f in pending]
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn ends by the signal it handled
    finally:
        if proc.poll() is None:
            proc.kill()
        output = proc.communicate()[0].decode()
    assert [r.status_code for r in answers] == [200] * len(seqs), output
    assert "Waiting for connections to close" in output or "Shutting down" in output, output
    assert [r.json() for r in answers] == expected
    with pytest.raises(httpx.TransportError):  # gone: nothing listens any more
        httpx.get(f"{base}/healthz", timeout=2)


def test_batching_settings_are_checked_and_serve_shares_the_cores_among_workers(monkeypatch):
    from genoseq.api.settings import default_threads

    for bad in ({"batch_wait_ms": -1}, {"max_batch_tokens": 0}, {"max_queue": 0}, {"threads": 0}):
        with pytest.raises(ValueError):
            ApiSettings(model="m", **bad)
    settings = ApiSettings(model="m", batch_wait_ms=2.5, max_batch_tokens=4096, max_queue=9, threads=1)
    assert ApiSettings.from_json(settings.to_json()) == settings  # what worker processes receive
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert default_threads() == 2 and default_threads(workers=2) == 1 and default_threads(workers=3) == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    assert default_threads() == 16 and default_threads(workers=4) == 4 and default_threads(workers=5) == 3
