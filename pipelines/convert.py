"""``genoseq convert``: published models from other projects as genoseq released models.

``genoseq convert hyenadna --checkpoint DIR --out MODEL_DIR`` reads a HyenaDNA checkpoint
folder (``config.json`` + ``weights.ckpt``, as published) and writes an ordinary genoseq model
folder that ``score``, ``vep``, ``embed``, ``classify``, ``generate``, ``serve`` and the
workflows take unchanged (see :mod:`genoseq.models.hyenadna`). The checkpoint's pickle is read
with tensors and plain containers only; one that asks to run code is refused. Nothing is
downloaded.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from genoseq.errors import InputError


def hyenadna(checkpoint: str, out: str, overwrite: bool = False) -> dict:
    """Convert a HyenaDNA checkpoint folder into a genoseq model folder.

    The converted model's per-base log-probabilities are HyenaDNA's own (same logits over the
    same vocabulary, re-ordered onto genoseq's token ids); its scoring window is HyenaDNA's
    training length (``l_max - 2``).

    Args:
        checkpoint: HyenaDNA checkpoint folder holding ``config.json`` and ``weights.ckpt``
            (e.g. a clone of ``hyenadna-tiny-1k-seqlen``).
        out: Output model folder (``config.json``, ``tokenizer.json``, ``model.safetensors``,
            ``conversion.json``). Written whole or not at all.
        overwrite: Replace an existing model in ``out``.
    """
    from genoseq.models.hyenadna import import_hyenadna
    from genoseq.models.lm import GenoSeqLM  # noqa: F401  (imported before the clock starts)
    from genoseq.runtime import atomic_directory, write_json

    out_dir = Path(out)
    if (out_dir / "config.json").exists() and not overwrite:
        raise InputError("already holds a model; pass --overwrite to replace it", path=str(out_dir))
    if Path(checkpoint).resolve() == out_dir.resolve():
        raise InputError("--out must differ from --checkpoint", path=str(out_dir))
    started = time.time()
    model, report = import_hyenadna(checkpoint)
    report["convert_seconds"] = round(time.time() - started, 2)
    with atomic_directory(out_dir) as tmp:
        model.save_pretrained(tmp)
        write_json(tmp / "conversion.json", {"from": "hyenadna", **report})
    skipped = f"; not imported: {len(report['not_imported'])} non-backbone tensors" if report["not_imported"] else ""
    print(f"genoseq convert hyenadna: {report['n_layer']} Hyena layers, d_model {report['d_model']}, l_max "
          f"{report['l_max']}, {report['parameters'] / 1e6:.2f} M parameters in {report['convert_seconds']:.1f} s"
          f"{skipped} -> {out_dir}", file=sys.stderr)
    return report
