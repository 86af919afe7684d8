"""Known motifs as files: MEME motif files and the JASPAR database that pyjaspar ships.

* :func:`read_meme` reads a MEME motif file (memelite's reader) and refuses anything that is not
  one with an :class:`~genoseq.InputError`;
* :func:`read_jaspar` takes motifs from the JASPAR database (no network): a collection,
  optionally limited to taxonomic groups;
* :func:`write_meme` writes probability matrices as a MEME (version 4) file.

Motifs are (width, 4) base probabilities over A, C, G, T, keyed by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from genoseq.errors import InputError
from genoseq.runtime import atomic_output, require_file

ALPHABET = "ACGT"


def read_meme(path: str | Path) -> dict[str, np.ndarray]:
    """Motifs of a MEME file: name (the rest of its MOTIF line) -> (w, 4) probabilities over A, C, G, T.

    InputError when the file is not MEME (no ``MEME version`` line), has no motif, a matrix that
    does not parse, or an alphabet other than ACGT.
    """
    from memelite.io import read_meme as _read

    path = require_file(path, "No such motif file", kind="file")
    try:
        with open(path, encoding="utf-8") as handle:
            head = handle.read(1 << 16)
    except UnicodeDecodeError:
        raise InputError("not a MEME motif file (not text)", path=str(path)) from None
    if "MEME version" not in head:
        raise InputError("not a MEME motif file: no 'MEME version' line (write motifs in MEME format, e.g. with "
                         "jaspar2meme or MEME's own tools)", path=str(path))
    alphabet = next((line.split("=", 1)[1].strip() for line in head.splitlines() if line.startswith("ALPHABET")), "ACGT")
    if alphabet.upper() != "ACGT":
        raise InputError(f"MEME file alphabet is {alphabet!r}; DNA motifs over ACGT are needed", path=str(path))
    try:
        found = _read(str(path))
    except (ValueError, IndexError, AttributeError) as err:
        raise InputError(f"MEME file does not parse: {err}", path=str(path)) from None
    if not found:
        raise InputError("MEME file holds no motif (no 'MOTIF' with a 'letter-probability matrix')", path=str(path))
    out = {}
    for name, pwm in found.items():
        m = np.asarray(pwm, dtype=np.float64).T
        if m.ndim != 2 or m.shape[1] != 4 or not np.isfinite(m).all() or (m < 0).any():
            raise InputError(f"motif {name!r}: not a 4-column probability matrix", path=str(path))
        out[name] = m
    return out


def read_jaspar(collection: str = "CORE", tax_group: Sequence[str] | str | None = None,
                release: str | None = None) -> dict[str, np.ndarray]:
    """Motifs of the JASPAR database shipped with pyjaspar: "<matrix id> <name>" -> (w, 4)
    probabilities over A, C, G, T (counts normalised). ``release`` defaults to the newest the
    package holds. InputError for an unknown release or a selection with no motif."""
    try:
        from pyjaspar import jaspardb
    except ImportError:
        raise InputError("JASPAR motifs need pyjaspar: pip install 'genoseq[jaspar]'", field="jaspar",
                         kind="missing_package") from None
    db = jaspardb()
    if release is not None:
        if release not in db.get_releases():
            raise InputError(f"unknown JASPAR release {release!r} (this pyjaspar holds "
                             f"{', '.join(db.get_releases())})", field="jaspar_release", kind="unknown")
        db = jaspardb(release=release)
    groups = [tax_group] if isinstance(tax_group, str) else (list(tax_group) if tax_group else None)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyjaspar warns on an empty selection; the error below says more
        found = db.fetch_motifs(collection=collection, tax_group=groups)
    if not found:
        raise InputError(f"no JASPAR {db.release} motif in collection {collection!r}"
                         + (f" for tax group {', '.join(groups)}" if groups else "")
                         + " (collections: CORE, UNVALIDATED, ...; tax groups: vertebrates, plants, insects, "
                           "nematodes, fungi, urochordates, ...)", field="jaspar", kind="empty")
    out = {}
    for motif in found:
        m = np.array([motif.counts[b] for b in ALPHABET], dtype=np.float64).T
        out[f"{motif.matrix_id} {motif.name}"] = m / m.sum(1, keepdims=True)
    return out


def write_meme(path: str | Path, motifs: dict[str, np.ndarray]) -> None:
    """A MEME (version 4) file of (w, 4) probability matrices, written atomically."""
    with atomic_output(path) as handle:
        handle.write("MEME version 4\n\nALPHABET= ACGT\n\nstrands: + -\n\n"
                     "Background letter frequencies\nA 0.25 C 0.25 G 0.25 T 0.25\n\n")
        for name, m in motifs.items():
            m = np.asarray(m, dtype=np.float64)
            handle.write(f"MOTIF {name}\nletter-probability matrix: alength= 4 w= {len(m)} nsites= 20 E= 0\n")
            for row in m / m.sum(1, keepdims=True):
                handle.write(" ".join(f"{v:.6f}" for v in row) + "\n")
            handle.write("\n")


__all__ = ["read_jaspar", "read_meme", "write_meme"]
