"""One device and precision policy, and safe output writing, for every job.

CPU works everywhere; CUDA (with the Triton kernels and bf16) is chosen automatically when
present; ``device="cpu"`` or ``"cuda:1"`` overrides it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator, Literal


def resolve_device(device: str | None = "auto"):
    """``"auto"`` -> CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    import torch

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} asked for, but this torch build sees no CUDA device")
    return dev


def trainer_precision(accelerator: str = "auto", precision: str | None = None) -> str:
    """Lightning precision: bf16-mixed on a bf16-capable GPU, 32-true otherwise (unless given)."""
    if precision:
        return precision
    import torch

    on_gpu = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    if on_gpu and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def inference_dtype(device) -> "torch.dtype | None":  # noqa: F821 - torch is imported lazily
    """Autocast dtype for inference: bf16 on a capable GPU, None (fp32) elsewhere."""
    import torch

    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once, at import: os.umask can only be read by setting it


@contextlib.contextmanager
def _moved_into_place(tmp: str | os.PathLike, path: Path) -> Iterator[None]:
    """Rename ``tmp`` to ``path`` when the block succeeds; remove ``tmp`` when it fails."""
    try:
        yield
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, mode: str = "w") -> Iterator:
    """Write ``path`` through a temporary file in the same folder, renamed on success.

    On an error (or Ctrl-C) the temporary file is removed and an existing ``path`` is left
    untouched, so a failed job never leaves a half-written result that looks complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with _moved_into_place(tmp, path):
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; results get the usual mode
        with os.fdopen(fd, mode) as handle:
            yield handle


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Like :func:`atomic_output` for writers that take a file name (pysam, h5py, matplotlib)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    with _moved_into_place(tmp, path):
        yield tmp


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """A folder written as ``.<name>.<pid>.tmp`` beside ``path`` and moved into place on success
    (replacing an old ``path``); on an error it is removed and ``path`` is left as it was."""
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def require_file(path: str | os.PathLike, message: str = "No such file or directory",
                 kind: Literal["any", "file", "folder"] = "any") -> Path:
    """``path`` as a :class:`Path`; a ``FileNotFoundError`` naming it (``message``) when nothing
    is there, or when it is not a regular file (``kind="file"``) or not a folder (``"folder"``)."""
    path = Path(path)
    found = {"any": path.exists, "file": path.is_file, "folder": path.is_dir}[kind]()
    if not found:
        raise FileNotFoundError(errno.ENOENT, message, str(path))
    return path


def write_json(path: str | os.PathLike, data) -> None:
    """``data`` as JSON indented by two spaces with a final newline, written atomically."""
    with atomic_output(path) as handle:
        handle.write(json.dumps(data, indent=2) + "\n")


def print_json(data, out: str | os.PathLike | None = None) -> None:
    """``data`` on stdout as :func:`write_json` writes it, and into ``out`` too when one is given
    (a benchmark's report and its ``--out``)."""
    print(json.dumps(data, indent=2))
    if out:
        write_json(out, data)


def write_tsv(path: str | os.PathLike, columns: list[str], rows) -> None:
    """A tab-separated table (a header of ``columns``, then one line per row of strings), written atomically."""
    with atomic_output(path) as handle:
        handle.write("\t".join(columns) + "\n")
        handle.writelines("\t".join(row) + "\n" for row in rows)


def save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> None:
    """A matplotlib figure as a PNG, written atomically; the figure is closed."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)


def safe_name(name: str) -> str:
    """A name as a file name: letters, digits, ``-_.`` kept, the rest ``_``, 60 characters at most."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:60]


LoggerChoice = Literal["csv", "tensorboard"]


def training_loggers(logger: str, folder: str | os.PathLike, csv_name: str = "") -> list:
    """The Lightning loggers of a training job (its ``--logger`` option).

    Always a CSV logger, ``folder/[csv_name/]metrics.csv``, which the PNG training curves are
    drawn from; with ``"tensorboard"`` also TensorBoard event files in ``folder/tensorboard``
    (``tensorboard --logdir folder/tensorboard``). TensorBoard is an optional extra: without it
    the job stops before training with the command that installs it.
    """
    from lightning.pytorch.loggers import CSVLogger

    from genoseq.errors import InputError

    if logger not in ("csv", "tensorboard"):
        raise InputError(f"--logger must be csv or tensorboard, got {logger!r}")
    loggers = [CSVLogger(str(folder), name=csv_name, version="")]
    if logger == "tensorboard":
        import importlib.util

        if importlib.util.find_spec("tensorboard") is None and importlib.util.find_spec("tensorboardX") is None:
            raise InputError("--logger tensorboard needs TensorBoard: pip install 'genoseq[tensorboard]' "
                             "(or pip install tensorboard)")
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(str(folder), name="tensorboard", version="", default_hp_metric=False))
    return loggers


# Lightning's messages that say nothing to a genoseq user (hardware lines are INFO logs; these
# are warnings): a deprecation inside Lightning itself, the few-workers hint on CPU, and the
# missing-validation note of jobs that validate by themselves.
_LIGHTNING_NOISE = (
    r".*LeafSpec.*",
    r".*does not have many workers.*",
    r".*defined a `?validation_step`? but have no `?val_dataloader`?.*",
    r".*Experiment logs directory .* exists and is not empty.*",
    r".*`Trainer\(limit_val_batches=.*\)` was configured.*",
    r".*smaller than the logging interval.*",
    # --resume: every DataModule restores its own position (datamodules.sampling), and a run keeps
    # only last.ckpt, so neither the "dataloader is not resumable" nor the moved-folder note applies
    r".*your dataloader is not resumable.*",
    r".*The dirpath has changed from.*",
    # a resumed fine-tuning finds its own last.ckpt in its checkpoint folder, by design
    r".*Checkpoint directory .* exists and is not empty.*",
)


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Around ``Trainer.fit``/``validate``: Lightning's info lines (GPU available, the cloud-logger
    tip, ...) and its warnings that are noise here are silenced; progress and real warnings stay."""
    import logging
    import warnings

    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric", "lightning")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            for pattern in _LIGHTNING_NOISE:
                warnings.filterwarnings("ignore", message=pattern)
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
