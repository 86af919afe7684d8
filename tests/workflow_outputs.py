"""What two runs of the workflow wrote, compared file by file: the same result files, each with the
same content. Content is bytes, except where a format records when or where it was written:
timings and creation times (keys ending in ``seconds``, ``per_s``, ``per_second``, ``created``)
are left out, the run folder in paths reads ``<run>``, and files whose bytes depend on
write order or a process id are compared by what they hold (JSON, safetensors, HDF5, Lightning
checkpoints, CSV, gzip, BAM and its index). Numbers must be identical, not close."""

from __future__ import annotations

import csv
import gzip
import json
import math
import re
from pathlib import Path
from typing import Any

TIMING = re.compile(r"(seconds|per_s|per_second|created)$")
TEMP_NAME = re.compile(r"\.\d+\.tmp\b")  # genoseq's atomic writes name a temporary file by process id


def normalize(value: Any, run: Path) -> Any:
    """A comparable form of a loaded document: timing keys dropped, the run folder replaced,
    arrays and tensors as (dtype, shape, bytes), NaN as a string (NaN != NaN)."""
    import numpy as np
    import torch

    if isinstance(value, dict):
        return {k: normalize(v, run) for k, v in value.items() if not TIMING.search(str(k))}
    if isinstance(value, (list, tuple)):
        return [normalize(v, run) for v in value]
    if isinstance(value, str):
        return value.replace(str(run), "<run>")
    if isinstance(value, bytes):
        return normalize(json.loads(value), run) if value.startswith(b"{") else value  # a JSON attribute
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().contiguous()
        return (str(value.dtype), tuple(value.shape), value.reshape(-1).view(torch.uint8).numpy().tobytes())
    if isinstance(value, np.ndarray):
        return (value.dtype.str, value.shape, np.ascontiguousarray(value).tobytes())
    if isinstance(value, np.generic):
        return value.item()
    return value


def _hdf5(path: Path) -> dict:
    import h5py

    items = {}
    with h5py.File(path, "r") as h5:
        items["/"] = dict(h5.attrs)
        h5.visititems(lambda name, obj: items.__setitem__(
            name, (dict(obj.attrs), obj[()] if isinstance(obj, h5py.Dataset) else None)))
    return items


def _bam(path: Path) -> tuple:
    import pysam

    with pysam.AlignmentFile(str(path), check_sq=False) as bam:
        header = TEMP_NAME.sub(".tmp", json.dumps(bam.header.to_dict(), sort_keys=True))
        return header, [record.to_string() for record in bam.fetch(until_eof=True)]


def content(path: Path, run: Path) -> Any:
    """What a result file of the run in folder ``run`` says, in a form equal between two runs."""
    suffix = path.suffix
    if suffix == ".json":
        loaded = json.loads(path.read_text())
    elif suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), "pt") as fh:
            loaded = (fh.metadata(), {key: fh.get_tensor(key) for key in fh.keys()})
    elif suffix == ".ckpt":
        import torch

        loaded = torch.load(path, map_location="cpu", weights_only=False)
    elif suffix == ".h5":
        loaded = _hdf5(path)
    elif suffix == ".csv":
        with open(path, newline="") as fh:
            loaded = list(csv.DictReader(fh))
    elif suffix == ".gz":  # gzip (a header mtime) or bgzip
        loaded = gzip.decompress(path.read_bytes())
    elif suffix == ".bam":
        loaded = _bam(path)
    elif suffix == ".bai":  # an index of the BAM next to it: what it counts
        import pysam

        with pysam.AlignmentFile(str(path.with_suffix("")), index_filename=str(path)) as bam:
            loaded = [tuple(stat) for stat in bam.get_index_statistics()]
    else:
        return path.read_bytes()
    return normalize(loaded, run)


def differences(run: Path, other: Path) -> list[str]:
    """The result files (under results/) that one run wrote and the other did not, or wrote with
    other content; empty when the two runs agree."""
    files = {p.relative_to(run / "results") for p in (run / "results").rglob("*") if p.is_file()}
    other_files = {p.relative_to(other / "results") for p in (other / "results").rglob("*") if p.is_file()}
    found = [f"only in {run}: {p}" for p in sorted(files - other_files)]
    found += [f"only in {other}: {p}" for p in sorted(other_files - files)]
    for name in sorted(files & other_files):
        a, b = run / "results" / name, other / "results" / name
        if a.read_bytes() != b.read_bytes() and content(a, run) != content(b, other):
            found.append(f"differs: {name}")
    return found
