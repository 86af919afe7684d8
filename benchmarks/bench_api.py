"""Load test of the REST API: a real `genoseq serve` on loopback, concurrent /v1/score clients.

Starts `genoseq serve --model MODEL` on 127.0.0.1 (a free port; never another host), waits for
/readyz, then runs CLIENTS concurrent clients, each sending REQUESTS /v1/score requests with one
random LENGTH-base sequence (every request its own sequence), and prints JSON: latency
p50/p90/p99/max (ms), requests/s, bases/s, errors (503s counted apart too), the server's peak
memory (VmHWM), how the server batched (forward passes; with dynamic batching also the gathered
batches and refusals) and the load average before and after. Bounded by --requests and --timeout.

    python benchmarks/bench_api.py --model runs/pretrain/model --clients 64 --requests 50

Batching options (--batch_wait_ms, --max_batch_tokens, --max_queue) go to `genoseq serve` only
when given, so --server_cmd can run another build's server that lacks them, e.g. the previous
commit's for a before/after comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import socket
import subprocess
import sys
import threading
import time

import httpx
import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(base: str, proc: subprocess.Popen, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"genoseq serve exited with status {proc.returncode}")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"server not ready within {timeout} s")


def peak_memory_mib(pid: int) -> float | None:
    """Peak resident memory (VmHWM) of a process, from /proc (None where there is no /proc)."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def run_clients(base: str, clients: int, requests: int, length: int, deadline: float, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    bases = np.frombuffer(b"ACGT", dtype=np.uint8)
    # Every request its own sequence: concurrent requests never send the same one.
    table = bases[rng.integers(0, 4, (clients * requests, length))]
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        with httpx.Client(base_url=base, timeout=60) as http:
            for i in range(requests):
                if time.monotonic() > deadline:
                    with lock:
                        errors.append("time limit reached")
                    return
                body = {"sequences": [table[k * requests + i].tobytes().decode()]}
                t0 = time.perf_counter()
                try:
                    response = http.post("/v1/score", json=body)
                    ok = response.status_code == 200 and len(response.json()["scores"]) == 1
                    problem = None if ok else f"HTTP {response.status_code}: {response.text[:200]}"
                except httpx.HTTPError as err:
                    problem = f"{type(err).__name__}: {err}"
                elapsed = time.perf_counter() - t0
                with lock:
                    latencies.append(elapsed)
                    if problem:
                        errors.append(problem)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    done = len(latencies)
    return {
        "requests": done, "errors": len(errors), "overloaded_503": sum(e.startswith("HTTP 503") for e in errors),
        "error_examples": sorted(set(errors))[:5],
        "seconds": round(wall, 3), "requests_per_s": round(done / wall, 2), "bases_per_s": round(done * length / wall),
        "latency_ms": {q: round(float(np.percentile(ms, p)), 2) for q, p in (("p50", 50), ("p90", 90), ("p99", 99))}
        | {"max": round(float(ms.max()), 2)} if done else {},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="released model folder")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--requests", type=int, default=500, help="requests per client")
    parser.add_argument("--length", type=int, default=1000, help="bases per sequence")
    parser.add_argument("--timeout", type=float, default=600, help="time limit for the load (s)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of the server")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch_wait_ms", type=float, default=None, help="genoseq serve --batch_wait_ms")
    parser.add_argument("--max_batch_tokens", type=int, default=None, help="genoseq serve --max_batch_tokens")
    parser.add_argument("--max_queue", type=int, default=None, help="genoseq serve --max_queue")
    parser.add_argument("--server_cmd", default=None,
                        help="command that runs the genoseq CLI for the server (default: this Python -m genoseq.cli)")
    args = parser.parse_args()

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    cli = shlex.split(args.server_cmd) if args.server_cmd else [sys.executable, "-m", "genoseq.cli"]
    command = [*cli, "serve", "--model", args.model, "--host", "127.0.0.1",
               "--port", str(port), "--device", args.device, "--log_level", "warning"]
    for option in ("batch_wait_ms", "max_batch_tokens", "max_queue"):
        if getattr(args, option) is not None:
            command += [f"--{option}", str(getattr(args, option))]
    load_before = os.getloadavg()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        ready = wait_ready(base, proc, timeout=120)
        deadline = time.monotonic() + args.timeout
        result = run_clients(base, args.clients, args.requests, args.length, deadline, args.seed)
        info = httpx.get(f"{base}/v1/models", timeout=10).json()
        scoring, batching = info["scoring"], info.get("batching", {})
        peak = peak_memory_mib(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    report = {
        "benchmark": "api_score_load", "model": args.model, "device": args.device, "clients": args.clients,
        "requests_per_client": args.requests, "sequence_length": args.length, "server_startup_s": round(ready, 2),
        **result, "forward_batches": scoring["batches"], "batched_rows": scoring["batched_rows"],
        "mean_rows_per_batch": round(scoring["batched_rows"] / scoring["batches"], 2) if scoring["batches"] else None,
        "gathered": batching.get("score"), "batching": {k: v for k, v in batching.items() if k not in ("score", "embed")},
        "server_peak_memory_mib": peak, "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count(),
        "server_cmd": " ".join(command[: command.index("serve")]),
    }
    print(json.dumps(report, indent=2))
    return 0 if result["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
