"""A released model on disk: ``config.json`` + ``tokenizer.json`` + ``model.safetensors``.

Every kind of genoseq model (language model, classifier, read encoder...) is written and read
here, so they share one format and one set of checks. Loading never unpickles: the weights are
safetensors, the rest JSON. Each file is written through a temporary file and a rename, and
``config.json``, written last, marks a complete model: an interrupted save never looks loadable.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

import genoseq
from genoseq.errors import InputError
from genoseq.runtime import atomic_path, require_file, write_json
from genoseq.tokenizer import TOKENIZER_FILE, Tokenizer

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
# Imported families whose folders are of an existing model type but not built from its own config
# (``config.json`` names them in "architecture"): (model_type, architecture) -> "module:builder".
ARCHITECTURES = {("GenoSeqLM", "striped_hyena2"): "genoseq.models.striped_hyena:build_released",
                 ("GenoSeqLM", "caduceus"): "genoseq.models.caduceus:build_released"}


def save_released(module: nn.Module, directory: str | Path, *, model_type: str, format_version: int,
                  tokenizer: Tokenizer, config: dict) -> Path:
    """Write ``module``'s weights, ``tokenizer`` and ``config`` (with the model type and versions)."""
    from safetensors.torch import save_model

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / WEIGHTS_FILE) as tmp:
        save_model(module, str(tmp), metadata={"format": "pt", "genoseq_version": genoseq.__version__})
    write_json(directory / TOKENIZER_FILE, tokenizer.to_dict())
    meta = {"model_type": model_type, "format_version": format_version, "genoseq_version": genoseq.__version__,
            **config, "tokenizer": tokenizer.to_dict()}
    write_json(directory / CONFIG_FILE, meta)
    return directory


def load_released(directory: str | Path, *, model_type: str, format_version: int,
                  build: Callable[[dict, Tokenizer], nn.Module], map_location: str | torch.device = "cpu") -> nn.Module:
    """Read a directory written by :func:`save_released`: ``build(config, tokenizer)`` makes the
    module, then the weights load strictly. Problems raise :class:`InputError` naming the file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    directory = require_file(directory, f"no {model_type} directory", kind="folder")
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    missing = [p.name for p in (config_path, weights_path) if not p.is_file()]
    if missing:
        raise InputError(f"not a genoseq {model_type} directory: missing {', '.join(missing)}", path=str(directory))
    try:
        meta = json.loads(config_path.read_text())
        if meta.get("model_type") != model_type:
            raise ValueError(f"model_type is {meta.get('model_type')!r}, expected {model_type!r}")
        if meta.get("format_version", 0) > format_version:
            raise ValueError(f"format_version {meta['format_version']} is newer than this genoseq reads")
        module = _builder(meta, model_type, build)(meta, Tokenizer.from_dict(meta["tokenizer"]))
    except (ValueError, KeyError, TypeError) as err:  # JSONDecodeError is a ValueError
        raise InputError(f"corrupt or incompatible {model_type} config: {err}", path=str(config_path)) from err
    try:
        load_model(module, str(weights_path), strict=True, device=str(torch.device(map_location)))
    except (SafetensorError, RuntimeError, OSError) as err:
        raise InputError(f"cannot load weights: {err}", path=str(weights_path)) from err
    return module.eval()


def _builder(meta: dict, model_type: str, build: Callable) -> Callable:
    """``build``, or the builder of the family ``meta["architecture"]`` names (:data:`ARCHITECTURES`)."""
    architecture = meta.get("architecture")
    if architecture is None:
        return build
    spec = ARCHITECTURES.get((model_type, architecture))
    if spec is None:
        raise ValueError(f"architecture {architecture!r} is not one this genoseq reads")
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


def language_model_config(lm) -> dict:
    """How a model built on a language model (a classifier, a segmenter) records it in its
    ``config.json``: ``"model"``, its config, and for an imported family ``"model_architecture"``."""
    architecture = getattr(lm, "architecture", None)
    return {"model": lm.config.to_dict(), **({"model_architecture": architecture} if architecture else {})}


def language_model(meta: dict, tokenizer: Tokenizer) -> nn.Module:
    """The (untrained) language model a ``config.json`` written with :func:`language_model_config`
    describes."""
    from .config import ModelConfig
    from .lm import GenoSeqLM

    architecture = meta.get("model_architecture")
    if architecture is None:
        return GenoSeqLM(ModelConfig.from_dict(meta["model"]), tokenizer=tokenizer)
    return _builder({"architecture": architecture}, "GenoSeqLM", GenoSeqLM)({"model": meta["model"]}, tokenizer)
