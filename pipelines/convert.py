"""``genoseq convert``: published models from other projects as genoseq released models.

``genoseq convert hyenadna --checkpoint DIR --out MODEL_DIR`` reads a HyenaDNA checkpoint
folder (``config.json`` + ``weights.ckpt``, as HyenaDNA publishes them, or a Hugging Face
``-hf`` folder: ``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``) and ``genoseq
convert evo2 --checkpoint evo2_1b_base.pt [--model_config evo2-1b-8k.yml] --out MODEL_DIR`` an
Evo 2 checkpoint file (and its config from Evo 2's repository); each writes an ordinary genoseq
model folder that ``score``, ``vep``, ``embed``, ``classify``, ``generate``, ``serve`` and the
workflows take unchanged (see
:mod:`genoseq.models.hyenadna`, :mod:`genoseq.models.evo2`). ``genoseq convert caduceus
--checkpoint DIR --out MODEL_DIR`` reads a Caduceus Hugging Face folder (PS or Ph,
:mod:`genoseq.models.caduceus_import`): a bidirectional masked LM, which ``score``, ``vep`` and
``interpret ism`` score by masking (:mod:`genoseq.models.masked`) and ``generate`` refuses. The checkpoint's pickle is read
with tensors and plain containers only; one that asks to run code is refused. Nothing is
downloaded.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from genoseq.errors import InputError


def hyenadna(checkpoint: str, out: str, overwrite: bool = False) -> dict:
    """Convert a HyenaDNA checkpoint folder (HyenaDNA's own or Hugging Face -hf) into a genoseq model.

    The layout is read off ``config.json``: HyenaDNA's ``HyenaDNAModel`` arguments (with a
    ``layer`` object) go with ``weights.ckpt``; a Hugging Face ``HyenaConfig`` (``model_type``
    ``hyenadna``, ``HyenaDNAForCausalLM``) with ``model.safetensors`` or else ``pytorch_model.bin``.
    Both layouts of the same weights give the same model. Its per-base log-probabilities are
    HyenaDNA's own (same logits over the same vocabulary, re-ordered onto genoseq's token ids); its
    scoring window is HyenaDNA's training length (``l_max - 2``).

    Args:
        checkpoint: HyenaDNA checkpoint folder: ``config.json`` and ``weights.ckpt`` (a clone of
            e.g. ``LongSafari/hyenadna-tiny-1k-seqlen``), or ``config.json`` and
            ``model.safetensors`` / ``pytorch_model.bin`` (e.g.
            ``LongSafari/hyenadna-tiny-1k-seqlen-hf``). Pickles are read with tensors and plain
            containers only.
        out: Output model folder (``config.json``, ``tokenizer.json``, ``model.safetensors``,
            ``conversion.json``). Written whole or not at all.
        overwrite: Replace an existing model in ``out``.
    """
    from genoseq.models.hyenadna import import_hyenadna
    from genoseq.models.lm import GenoSeqLM  # noqa: F401  (imported before the clock starts)

    out_dir = _output_folder(checkpoint, out, overwrite)
    started = time.time()
    model, report = import_hyenadna(checkpoint)
    _save(model, report, out_dir, "hyenadna", started)
    skipped = f"; not imported: {len(report['not_imported'])} non-backbone tensors" if report["not_imported"] else ""
    print(f"genoseq convert hyenadna ({report['weights']}): {report['n_layer']} Hyena layers, d_model "
          f"{report['d_model']}, l_max {report['l_max']}, {report['parameters'] / 1e6:.2f} M parameters in "
          f"{report['convert_seconds']:.1f} s{skipped} -> {out_dir}", file=sys.stderr)
    return report


def evo2(checkpoint: str, out: str, model_config: str | None = None, overwrite: bool = False) -> dict:
    """Convert an Evo 2 (StripedHyena 2) checkpoint into a genoseq model folder.

    The converted model's per-base log-probabilities are Evo 2's own (same logits over Evo 2's
    512-byte vocabulary, its rows re-ordered onto genoseq's token ids); its scoring window is the
    config's ``max_seqlen``.

    Args:
        checkpoint: Evo 2's ``.pt`` file (e.g. ``evo2_1b_base.pt``).
        out: Output model folder (``config.json``, ``tokenizer.json``, ``model.safetensors``,
            ``conversion.json``). Written whole or not at all.
        model_config: Evo 2's YAML config of that model (its repository's ``configs/evo2-1b-8k.yml``).
            Without it the architecture is read off the tensors and Evo 2's published settings
            are assumed for the rest (listed in ``conversion.json``). (``--config`` is every
            command's own option: a YAML file of this command's options.)
        overwrite: Replace an existing model in ``out``.
    """
    from genoseq.models.evo2 import import_evo2

    out_dir = _output_folder(checkpoint, out, overwrite)
    started = time.time()
    model, report = import_evo2(checkpoint, model_config)
    _save(model, report, out_dir, "evo2", started)
    note = f"; {report['note']}" if report.get("note") else ""
    print(f"genoseq convert evo2: {report['n_layers']} layers ({report['pattern']}), d_model {report['d_model']}, "
          f"{report['parameters'] / 1e6:.2f} M parameters in {report['convert_seconds']:.1f} s{note} -> {out_dir}",
          file=sys.stderr)
    return report


def caduceus(checkpoint: str, out: str, conjoin: bool | None = None, overwrite: bool = False) -> dict:
    """Convert a Caduceus model (a Hugging Face folder) into a genoseq model folder.

    The converted model's masked-LM logits are Caduceus' own (over its padded character
    vocabulary, rows re-ordered onto genoseq's token ids). Caduceus is bidirectional: ``embed``,
    ``classify`` and the other commands that read hidden states take it; ``score`` (pseudo-log-
    likelihood), ``vep`` and ``interpret ism`` (masked marginals) score it by masking; ``generate``,
    which needs next-base probabilities, refuses it.

    Args:
        checkpoint: The model's folder (``config.json`` and ``model.safetensors`` or
            ``pytorch_model.bin``, as published, e.g. a clone of
            ``caduceus-ps_seqlen-131k_d_model-256_n_layer-16``).
        out: Output model folder (``config.json``, ``tokenizer.json``, ``model.safetensors``,
            ``conversion.json``). Written whole or not at all.
        conjoin: Average each position's logits with those of the reverse complement (post-hoc
            conjoining, Caduceus-Ph). Default: true for models without RC parameter sharing
            (``rcps: false``), whose output is then RC-equivariant too; PS models are already.
        overwrite: Replace an existing model in ``out``.
    """
    from genoseq.models.caduceus_import import import_caduceus

    out_dir = _output_folder(checkpoint, out, overwrite)
    started = time.time()
    model, report = import_caduceus(checkpoint, conjoin)
    _save(model, report, out_dir, "caduceus", started)
    print(f"genoseq convert caduceus: Caduceus-{report['variant']}, {report['n_layers']} BiMamba layers, d_model "
          f"{report['caduceus_d_model']}, {report['parameters'] / 1e6:.2f} M parameters in "
          f"{report['convert_seconds']:.1f} s -> {out_dir}", file=sys.stderr)
    return report


def _output_folder(checkpoint: str, out: str, overwrite: bool) -> Path:
    out_dir = Path(out)
    if (out_dir / "config.json").exists() and not overwrite:
        raise InputError("already holds a model; pass --overwrite to replace it", path=str(out_dir))
    if Path(checkpoint).resolve() == out_dir.resolve():
        raise InputError("--out must differ from --checkpoint", path=str(out_dir))
    return out_dir


def _save(model, report: dict, out_dir: Path, family: str, started: float) -> None:
    """The model folder with ``conversion.json``, whole or not at all."""
    from genoseq.runtime import atomic_directory, write_json

    report["convert_seconds"] = round(time.time() - started, 2)
    with atomic_directory(out_dir) as tmp:
        model.save_pretrained(tmp)
        write_json(tmp / "conversion.json", {"from": family, **report})
