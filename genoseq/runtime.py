"""One device and precision policy, and safe output writing, for every job.

CPU works everywhere; CUDA (with the Triton kernels and bf16) is chosen automatically when
present; ``device="cpu"`` or ``"cuda:1"`` overrides it.
"""

from __future__ import annotations

import contextlib
import contextvars
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


# A write that failed because of where it went, not what was written. A full disk's write()
# names no file, and a writer's error names its temporary file: both are told with the output's path.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM})


class _Outputs:
    """The temporary files and folders of an :func:`atomic_outputs` block, and their final paths."""

    def __init__(self) -> None:
        self.moves: list[tuple[Path, Path]] = []

    def commit(self) -> None:
        for tmp, path in self.moves:
            _replace(tmp, path)

    def discard(self) -> None:
        for tmp, _ in self.moves:
            _remove(tmp)


_OUTPUTS: contextvars.ContextVar[_Outputs | None] = contextvars.ContextVar("genoseq_outputs", default=None)


@contextlib.contextmanager
def atomic_outputs() -> Iterator[None]:
    """Outputs written together: every atomic write in the block (:func:`atomic_output`,
    :func:`atomic_path`, :func:`atomic_directory` and the writers built on them) is complete
    and flushed when its own block ends, but renamed into place only when this block succeeds;
    when it fails, all of them are removed. So a job's result and its summary (``out`` and
    ``out.json``) appear both or neither, even when the disk fills up between the two.
    Nested, it is part of the enclosing one."""
    if _OUTPUTS.get() is not None:
        yield
        return
    outputs = _Outputs()
    token = _OUTPUTS.set(outputs)
    try:
        yield
    except BaseException:
        outputs.discard()
        raise
    finally:
        _OUTPUTS.reset(token)
    try:
        outputs.commit()
    except BaseException:
        outputs.discard()
        raise


def _replace(tmp: Path, path: Path) -> None:
    if tmp.is_dir() and (path.exists() or path.is_symlink()):
        import shutil

        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    os.replace(tmp, path)


def _remove(tmp: Path) -> None:
    """Remove a temporary file or folder if it is there. Failing to (a read-only file system
    refuses even to unlink what is not there) must not hide the error that led here."""
    import shutil

    with contextlib.suppress(OSError):
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp)
        elif os.path.lexists(tmp):
            os.unlink(tmp)


# The outputs being written now (the atomic writers' blocks this one is inside).
_WRITING: contextvars.ContextVar[tuple[Path, ...]] = contextvars.ContextVar("genoseq_writing", default=())


def _naming_output(err: BaseException, path: Path, tmp: Path) -> BaseException:
    """``err`` as the same kind of ``OSError`` naming the output ``path``, when it is a failed
    write (:data:`WRITE_ERRNOS`) that names no file or the temporary one ``tmp``; else ``err``.
    An error that names no file while several outputs are open could be any one's: it names
    their folder."""
    if not isinstance(err, OSError) or err.errno not in WRITE_ERRNOS:
        return err
    if err.filename is not None and os.fsdecode(err.filename) != str(tmp):
        return err  # another file's error, e.g. an input's
    folders = {p.parent for p in _WRITING.get()}
    if err.filename is None and len(_WRITING.get()) > 1 and len(folders) == 1:
        path = folders.pop()
    return OSError(err.errno, os.strerror(err.errno), str(path))


def _raise_naming_output(err: BaseException, path: Path, tmp: Path) -> None:
    """Raise ``err`` (being handled), as :func:`_naming_output` tells it."""
    named = _naming_output(err, path, tmp)
    if named is err:
        raise err
    raise named from err


def _output_folder(path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def _moved_into_place(tmp: Path, path: Path) -> Iterator[None]:
    """Rename ``tmp`` to ``path`` when the block succeeds (when an enclosing :func:`atomic_outputs`
    block does, if there is one); remove ``tmp`` when it fails. A failed write names ``path``."""
    _WRITING.set(_WRITING.get() + (path,))
    try:
        yield
        outputs = _OUTPUTS.get()
        if outputs is None:
            _replace(tmp, path)
        else:
            outputs.moves.append((tmp, path))
    except BaseException as err:
        _remove(tmp)
        _raise_naming_output(err, path, tmp)
    finally:
        _WRITING.set(tuple(p for p in _WRITING.get() if p is not path))


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, mode: str = "w") -> Iterator:
    """Write ``path`` through a temporary file in the same folder, renamed on success.

    On an error (or Ctrl-C, or SIGTERM under the CLI) the temporary file is removed and an
    existing ``path`` is left untouched, so a failed job never leaves a half-written result that
    looks complete. The file is flushed and closed before the rename, so a full disk fails here.
    """
    path = _output_folder(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:  # a read-only or unwritable folder: err names the temporary file it tried
        _raise_naming_output(err, path, Path(err.filename or ""))
    with _moved_into_place(Path(tmp), path):
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; results get the usual mode
        with os.fdopen(fd, mode) as handle:
            yield handle


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Like :func:`atomic_output` for writers that take a file name (pysam, h5py, matplotlib). The
    temporary file is created (empty) before the writer opens it, so that an unwritable folder
    fails here, naming ``path``, not in a C library that prints its own error lines first.
    (h5py crashes the process as it exits when the disk filled up while HDF5 held unwritten
    data: :class:`genoseq.store.TokenStoreWriter` writes whole chunks with no chunk cache and
    empties the file before closing it after a failure; a result small enough is better built
    in memory and written with :func:`atomic_output`.)"""
    path = _output_folder(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    with _moved_into_place(tmp, path):
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666))
        yield tmp


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """A folder written as ``.<name>.<pid>.tmp`` beside ``path`` and moved into place on success
    (replacing an old ``path``); on an error it is removed and ``path`` is left as it was."""
    path = _output_folder(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    _remove(tmp)
    with _moved_into_place(tmp, path):
        tmp.mkdir()
        yield tmp


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
