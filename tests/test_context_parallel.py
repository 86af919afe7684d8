"""Context parallelism over 2 CPU processes (gloo): the loss and every gradient of one window
split along its length equal the single-process step, in float64."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from genoseq.errors import InputError
from genoseq.genome import open_genome
from genoseq.models.config import ModelConfig
from genoseq.models.lm import GenoSeqLM
from genoseq.models.parallel import ContextParallel, context_parallel_problems
from test_pipeline_pretrain import assert_same_weights

WORLD = 2
CONFIGS = {
    # pattern, extra options: every mixer, grouped-query attention, Mamba2 groups, checkpointing,
    # the attention layer's short conv
    "hyena-mamba-attention": dict(pattern="HMA"),
    "gqa-groups-checkpointed": dict(pattern="MAH", n_kv_heads=2, n_groups=2, checkpointing=True),
    "sliding-window": dict(pattern="AHA", attention_window=24, global_attention_layers=[2]),
    "attention-conv-partial-rotary": dict(pattern="HA", attention_conv=4, rope_fraction=0.5),
}


def tiny_lm(options: dict) -> GenoSeqLM:
    torch.manual_seed(0)
    cfg = ModelConfig(**{**dict(d_model=32, n_heads=4, headdim=16, d_state=16, chunk_size=16, hyena_filter_len=64,
                                hyena_filter_dim=16), **options})
    return GenoSeqLM(cfg).double()


def lambda_batch(batch: int = 2, length: int = 96) -> torch.Tensor:
    genome = open_genome(os.path.join(os.path.dirname(__file__), "..", "genoseq", "data", "lambda_phage.fa"))
    name = next(iter(genome.contigs))
    rows = [genome.fetch(name, 1000 + 5000 * i, 1000 + 5000 * i + length) for i in range(batch)]
    return torch.from_numpy(np.stack(rows).astype(np.int64))


def gradients(lm: GenoSeqLM) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in lm.named_parameters() if p.grad is not None}


def _rank_main(rank: int, port: int, ids: torch.Tensor, out: str) -> None:
    """One rank: every config's step on its slice of the windows, gradients averaged as DDP does."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        results = {}
        for name, options in CONFIGS.items():
            lm = tiny_lm(options)
            lm.train()
            lm.context_parallel_size = WORLD
            lm.setup("fit")
            loss, n = lm.lm_loss({"input_ids": ids})
            (loss * WORLD).backward()  # what training_step returns
            for p in lm.parameters():  # what DDP does: the average over the ranks
                if p.grad is not None:
                    dist.all_reduce(p.grad)
                    p.grad /= WORLD
            results[name] = {"loss": lm._cp.all_reduce(loss), "n": n, "grads": gradients(lm)}
        if rank == 0:
            torch.save(results, out)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_rank_steps(tmp_path_factory) -> tuple[torch.Tensor, dict]:
    ids = lambda_batch()
    out = str(tmp_path_factory.mktemp("context_parallel") / "rank0.pt")
    mp.start_processes(_rank_main, args=(_free_port(), ids, out), nprocs=WORLD, start_method="spawn")
    return ids, torch.load(out, weights_only=True)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_context_parallel_step_equals_single_process(two_rank_steps, name):
    ids, results = two_rank_steps
    got = results[name]
    lm = tiny_lm(CONFIGS[name])
    lm.train()
    loss, n = lm.lm_loss({"input_ids": ids})
    loss.backward()
    want = gradients(lm)
    assert int(got["n"]) == int(n)
    torch.testing.assert_close(got["loss"], loss.detach(), rtol=0, atol=1e-9)
    assert set(got["grads"]) == set(want)
    for key, grad in want.items():
        torch.testing.assert_close(got["grads"][key], grad, rtol=1e-6, atol=1e-9, msg=lambda m: f"{key}: {m}")


def test_problems_name_the_option_and_the_numbers():
    cfg = ModelConfig(d_model=96, pattern="HMA", n_heads=3, headdim=32, n_groups=3)
    problems = context_parallel_problems(cfg, 2, lengths=[1000, 1001])
    text = "\n".join(problems)
    assert "window length 1001 is not divisible by context_parallel=2" in text
    assert "Mamba2's 6 heads" not in text  # 2 * 96 / 32 = 6 heads divide
    assert "n_groups=3" in text and "n_heads=3" in text
    assert not context_parallel_problems(ModelConfig(d_model=64, pattern="HMA", n_heads=4, headdim=32), 2, [1024])


def test_create_needs_a_process_group():
    with pytest.raises(RuntimeError, match="process group"):
        ContextParallel.create(2)


# ---------------------------------------------------------------------------- genoseq pretrain
def _pretrain_args(out, max_steps: int, *extra: str) -> list[str]:
    return ["pretrain", "--out", str(out), "--model.d_model", "32", "--model.pattern", "HMA", "--model.n_heads", "4",
            "--model.headdim", "16", "--model.d_state", "16", "--model.hyena_filter_dim", "16",
            "--window.buckets", "[64, 128]", "--window.tokens_per_batch", "256", "--window.windows_per_epoch", "16",
            "--window.max_val_windows", "4", "--optim.total_steps", "8", "--optim.warmup_steps", "2",
            "--trainer.max_steps", str(max_steps), "--trainer.val_check_interval", "5",
            "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.context_parallel", "2",
            "--progress", "none", *extra]


def _pretrain_cli(out, max_steps: int, *extra: str) -> None:
    """`genoseq pretrain` over 2 CPU processes (Lightning's DDP launcher runs the command twice)."""
    done = subprocess.run([sys.executable, "-m", "genoseq.cli", *_pretrain_args(out, max_steps, *extra)],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc: field 4 of each process's stat)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _kill_after_checkpoint(out, victim: str, *extra: str) -> tuple[int, str]:
    """Start a 2-rank pretrain, SIGKILL rank 0 (``victim="main"``) or rank 1 once it has written a
    checkpoint, and return the exit status of rank 0 and everything both ranks wrote to stderr (read
    to its end: both processes have gone)."""
    import signal
    import time

    proc = subprocess.Popen([sys.executable, "-m", "genoseq.cli", *_pretrain_args(out, 100_000, *extra)],
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    ckpt, deadline = out / "checkpoints" / "last.ckpt", time.monotonic() + 240
    before = ckpt.stat().st_mtime_ns if ckpt.exists() else None
    while time.monotonic() < deadline and proc.poll() is None:
        if ckpt.exists() and ckpt.stat().st_mtime_ns != before:
            break
        time.sleep(0.5)
    children = _children(proc.pid)
    if not children:
        proc.kill()
    assert children and ckpt.stat().st_mtime_ns != before, "the run made no checkpoint or has no second rank"
    time.sleep(1.0)
    os.kill(proc.pid if victim == "main" else int(children[0]), signal.SIGKILL)
    _, stderr = proc.communicate(timeout=60)
    return proc.returncode, stderr


def test_a_lost_rank_stops_the_run_with_a_message(tmp_path):
    """A rank killed mid-run (the kernel's out-of-memory killer, a node lost) stops the others within
    seconds, with a message naming it and how to continue, not a hang or a traceback: rank 1 killed
    (rank 0 says so), then rank 0 killed (rank 1 says so and exits). --resume itself is the next
    test's."""
    status, stderr = _kill_after_checkpoint(tmp_path / "a", "rank1")
    assert status == 1, stderr[-3000:]
    assert "rank 1 of 2" in stderr and "killed by SIGKILL" in stderr and "--resume true" in stderr, stderr[-3000:]
    assert "Traceback" not in stderr
    status, stderr = _kill_after_checkpoint(tmp_path / "b", "main")
    assert status == -9 and "rank 0 (pid" in stderr and "rank 1 stops too" in stderr, stderr[-3000:]


def test_pretrain_over_two_ranks_resumes_exactly(tmp_path):
    """`--trainer.context_parallel 2` with the length curriculum: 5 steps then --resume to 8 gives
    the weights of 8 steps straight."""
    _pretrain_cli(tmp_path / "straight", 8)
    _pretrain_cli(tmp_path / "resumed", 5)
    _pretrain_cli(tmp_path / "resumed", 8, "--resume", "true")
    assert_same_weights(tmp_path / "straight" / "model", tmp_path / "resumed" / "model")
    metrics = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    assert metrics["steps"] == 8 and metrics["final_val_bits_per_base"] < 4


def test_pretrain_refuses_windows_that_do_not_split(tmp_path):
    from genoseq.pipelines.pretrain import pretrain

    with pytest.raises(InputError, match=r"window length 127 is not divisible by context_parallel=2.*"
                                         r"trainer.devices \(auto\)"):
        pretrain(out=str(tmp_path / "run"), model={"d_model": 32, "pattern": "HA", "n_heads": 2},
                 window={"length": 127}, trainer={"context_parallel": 2, "accelerator": "cpu"})
    assert not (tmp_path / "run" / "checkpoints").exists()
