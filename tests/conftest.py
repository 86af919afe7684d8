"""Shared fixtures: the real genomes in ../shared/data (see its README), decompressed once per run."""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    # The Triton kernels run in Triton's CPU interpreter in the test suite. Triton reads
    # TRITON_INTERPRET when it is first imported, and any earlier test module (Lightning,
    # torch.compile) may import it: set it here, before the test modules load.
    os.environ.setdefault("TRITON_INTERPRET", "1")

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("GENOSEQ_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "README.md").exists():
        raise RuntimeError(f"shared data not found at {DATA_DIR}; set GENOSEQ_SHARED_DATA")
    return DATA_DIR


def _gunzip(src: Path, dest_dir: Path) -> Path:
    dest = dest_dir / src.name.removesuffix(".gz")
    if not dest.exists():
        with gzip.open(src, "rb") as fin, open(dest, "wb") as fout:
            shutil.copyfileobj(fin, fout)
    return dest


@pytest.fixture(scope="session")
def plain_data(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("plain_data")


@pytest.fixture(scope="session")
def ecoli_fasta(data_dir, plain_data) -> Path:
    """E. coli K-12 MG1655 chromosome as plain FASTA (4,639,675 bp, contig 'K-12-MG1655')."""
    return _gunzip(data_dir / "ecoli_k12_mg1655.fa.gz", plain_data)


@pytest.fixture(scope="session")
def saureus_fasta(data_dir, plain_data) -> Path:
    """S. aureus N315 chromosome as plain FASTA (2,814,816 bp, contig 'NC_002745.2')."""
    return _gunzip(data_dir / "saureus_n315.fa.gz", plain_data)


@pytest.fixture(scope="session")
def lambda_fasta() -> Path:
    """The bundled phage lambda genome (48,502 bp, contig 'NC_001416.1')."""
    import genoseq

    return Path(genoseq.default_genome())


@pytest.fixture(scope="session")
def tiny_lm():
    """Makes the small untrained hybrid (Mamba2 + attention, d_model 32) the task tests start
    from: the same weights at every call (seed 0)."""

    def make():
        from genoseq.models import GenoSeqLM, ModelConfig

        torch.manual_seed(0)
        return GenoSeqLM(ModelConfig(d_model=32, pattern="MA", n_heads=2, headdim=16, d_state=16, chunk_size=32))

    return make
