"""docs/tutorial.md runs: its shell blocks, in order, on the shared data at tiny sizes."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TUTORIAL = REPO / "docs" / "tutorial.md"


def shell_blocks(text: str) -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M)


def test_every_figure_the_tutorial_shows_exists():
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", TUTORIAL.read_text())
    assert images
    for image in images:
        assert (TUTORIAL.parent / image).is_file(), image


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("snakemake", path=str(Path(sys.executable).parent)) is None
                    and shutil.which("snakemake") is None, reason="snakemake not installed")
def test_tutorial_commands_run(data_dir, tmp_path):
    blocks = shell_blocks(TUTORIAL.read_text())
    assert len(blocks) >= 10
    script = tmp_path / "tutorial.sh"
    script.write_text("set -eu\n" + "\n".join(blocks))  # as typed: `zcat | head` may end on SIGPIPE
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "t"
    env = dict(os.environ, T=str(out), DATA=str(data_dir), STEPS="12", ROWS="40", PORT=str(port),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               GENOSEQ_PROGRESS="none", OMP_NUM_THREADS="2")
    done = subprocess.run(["bash", str(script)], cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, f"tutorial failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    for path in ("ecoli.h5", "run/model/model.safetensors", "run/training_curve.png", "lambda_scores.tsv",
                 "snvs.vep.vcf.gz", "ecoli_regions.h5", "classifier/config.json", "classifier_eval/metrics.json",
                 "classifier_eval/roc.png", "designs.fa", "reads.bam", "workflow/results"):
        assert (out / path).exists(), path
    assert "mean LLR" in done.stdout and "reads," in done.stdout
    assert '"scores"' in done.stdout and '"label"' in done.stdout  # the two curl answers
