"""Read a PyTorch checkpoint that someone else wrote, without running any code from it.

A ``.ckpt`` / ``.pt`` file is a pickle, and unpickling can call any function the file names
(``os.system`` is one line away). :func:`load_untrusted` rebuilds tensors and plain containers
only:

* tensors, parameters and their storages, ``OrderedDict``, ``set``/``frozenset``/``slice``/
  ``complex`` and the ``torch`` dtype and size objects are rebuilt as themselves;
* a global from a module that can run programs, read or write files, import code or evaluate
  expressions (``os``, ``subprocess``, ``builtins.eval``, ``importlib``, ``runpy``, ...) makes
  the whole file refused (:class:`UnsafeCheckpoint`), before anything from it is called;
* any other class or function the file names (an ``omegaconf.DictConfig`` of
  hyperparameters, a numpy scalar in a callback's state, ...) becomes an inert
  :class:`Opaque` record of its name and arguments: nothing is imported and nothing is called.

So a training checkpoint (weights, optimiser state, hyperparameters of any library) loads, and
its ``state_dict`` comes back as real tensors; what the file would have executed never runs.
A ``.safetensors`` file holds tensors and a JSON header only, nothing that could run:
:func:`load_safetensors` reads it with the same errors for a missing or damaged file, and
:func:`hf_folder_tensors` a Hugging Face model folder's weights, whichever of the two it has.
"""

from __future__ import annotations

import collections
import pickle
from pathlib import Path
from types import SimpleNamespace

import torch

from genoseq.errors import InputError


class UnsafeCheckpoint(InputError):
    """The file asks the unpickler for a global that can run code."""


class Opaque:
    """Stands in for an object of a class the loader does not rebuild: keeps the class's name,
    the arguments and state the pickle gave it, and does nothing with them."""

    __slots__ = ("global_name", "args", "state", "items")

    def __init__(self, global_name: str, args: tuple = ()) -> None:
        self.global_name, self.args, self.state, self.items = global_name, args, None, []

    def __setstate__(self, state) -> None:
        self.state = state

    def __setitem__(self, key, value) -> None:  # dict-like pickles (SETITEMS)
        self.items.append((key, value))

    def append(self, value) -> None:  # list-like pickles (APPENDS)
        self.items.append(value)

    def extend(self, values) -> None:
        self.items.extend(values)

    def __repr__(self) -> str:
        return f"Opaque({self.global_name})"


def _opaque_factory(global_name: str):
    class _Stub(Opaque):
        __slots__ = ()

        def __new__(cls, *args, **kwargs):  # NEWOBJ calls cls.__new__(cls, *args) without __init__
            obj = object.__new__(cls)
            Opaque.__init__(obj, global_name, args)
            return obj

        def __init__(self, *args, **kwargs) -> None:
            pass

    _Stub.__name__ = _Stub.__qualname__ = f"Opaque[{global_name}]"
    return _Stub


# Rebuilt as themselves: everything torch.save writes for tensors, plus pure constructors.
_REAL = {
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("builtins", "complex"): complex,
    ("builtins", "bytearray"): bytearray,
    ("_codecs", "encode"): lambda text, encoding="latin1": str(text).encode(encoding),  # protocol-2 bytes
}
_REAL.update({("torch", name): getattr(torch, name) for name in dir(torch)
              if isinstance(getattr(torch, name, None), torch.dtype)})

# Modules whose globals can run programs, touch files, import code or evaluate expressions.
_DANGEROUS_MODULES = {
    "os", "posix", "nt", "subprocess", "sys", "shutil", "socket", "importlib", "runpy", "pickle",
    "_pickle", "marshal", "types", "code", "codeop", "pty", "ctypes", "multiprocessing", "signal",
    "webbrowser", "http", "urllib", "asyncio", "tempfile", "glob", "zipimport", "pkgutil", "operator",
    "inspect", "gc", "timeit", "pdb", "bdb", "trace", "torch.hub", "torch.package", "torch.ops",
    "torch.utils.cpp_extension", "numpy.testing", "numpy.f2py", "numpy.distutils",
}


def _is_dangerous(module: str, name: str) -> bool:
    if module == "builtins":
        return True  # every builtin not in _REAL: eval, exec, getattr, __import__, open, ...
    parts = module.split(".")
    return any(".".join(parts[: i + 1]) in _DANGEROUS_MODULES for i in range(len(parts))) or name.startswith("__")


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        module = {"__builtin__": "builtins", "copy_reg": "copyreg"}.get(module, module)  # protocol-2 names
        if (module, name) in _REAL:
            return _REAL[(module, name)]
        if _is_dangerous(module, name):
            raise UnsafeCheckpoint(
                f"refused: the checkpoint asks to call {module}.{name}, which can run code; nothing from it was executed"
            )
        return _opaque_factory(f"{module}.{name}")


# torch.load calls pickle_module.Unpickler(...) (and .load for legacy files)
_PICKLE_MODULE = SimpleNamespace(Unpickler=_RestrictedUnpickler, load=lambda f, **kw: _RestrictedUnpickler(f, **kw).load(),
                                 __name__="genoseq_restricted_pickle")


def load_untrusted(path: str | Path):
    """The object in a ``torch.save`` file (zip or legacy format) with only tensors and plain
    containers rebuilt (see the module docstring). Tensors land on the CPU.

    Raises :class:`UnsafeCheckpoint` for a file that names a code-running global and
    :class:`InputError` for one that is missing, empty, truncated or not a torch/pickle file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("no such checkpoint file", path=str(path))
    if path.stat().st_size == 0:
        raise InputError("the checkpoint file is empty", path=str(path))
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_PICKLE_MODULE)
    except UnsafeCheckpoint as err:
        raise UnsafeCheckpoint(err.reason, path=str(path)) from None
    except InputError:
        raise
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, OSError, MemoryError) as err:
        first = str(err).split(". ")[0].strip() or type(err).__name__
        raise InputError(f"not a readable PyTorch checkpoint (truncated, or not written by torch.save?): {first}",
                         path=str(path)) from None


def load_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file (on the CPU), or an :class:`InputError` for one that
    is missing, empty, truncated or not safetensors."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise InputError("no such safetensors file", path=str(path))
    if path.stat().st_size == 0:
        raise InputError("the safetensors file is empty", path=str(path))
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        first = str(err).split(". ")[0].strip() or type(err).__name__
        raise InputError(f"not a readable safetensors file (truncated, or a Git LFS pointer?): {first}",
                         path=str(path)) from None


HF_WEIGHTS_FILES = ("model.safetensors", "pytorch_model.bin")  # a Hugging Face model folder's, read in this order


def hf_folder_tensors(folder: str | Path, what: str = "a Hugging Face model folder") -> tuple[dict[str, torch.Tensor],
                                                                                          Path]:
    """``(tensors by their stored names, the file read)`` of a Hugging Face model folder:
    ``model.safetensors``, else ``pytorch_model.bin`` through :func:`load_untrusted` (a bare
    state dict, or one under ``"state_dict"``). Neither there is an :class:`InputError` calling
    the folder ``what``."""
    folder = Path(folder)
    path = next((folder / name for name in HF_WEIGHTS_FILES if (folder / name).is_file()), None)
    if path is None:
        raise InputError(f"not {what}: no {' or '.join(HF_WEIGHTS_FILES)}", path=str(folder))
    if path.suffix == ".safetensors":
        return load_safetensors(path), path
    state = load_untrusted(path)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    return tensor_dict(state, path=path), path


def tensor_dict(obj, *, path: str | Path, where: str = "state_dict") -> dict[str, torch.Tensor]:
    """``obj`` as a ``{name: tensor}`` dict, or an :class:`InputError` naming what is not a tensor."""
    if not isinstance(obj, dict):
        raise InputError(f"{where} is a {type(obj).__name__}, not a mapping of tensors", path=str(path))
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise InputError(f"{where} holds {len(bad)} entries that are not tensors, e.g. {bad[0]!r}", path=str(path))
    return dict(obj)


class CheckedTensors:
    """A checkpoint's tensors taken one by one, each checked against the shape its config implies
    and returned as float32; :meth:`unused` lists those never taken, so none is left out unnoticed.
    Messages name a tensor as ``prefix + name`` and the file as ``path``."""

    def __init__(self, tensors: dict[str, torch.Tensor], path, prefix: str = "") -> None:
        self.tensors, self.path, self.prefix, self.used = tensors, path, prefix, set()

    def take(self, name: str, shape: tuple | None = None, optional: bool = False) -> torch.Tensor | None:
        if name not in self.tensors:
            if optional:
                return None
            raise InputError(f"the checkpoint has no {self.prefix}{name}, which the config implies", path=str(self.path))
        value = self.tensors[name].detach().to(torch.float32)
        if shape is not None and tuple(value.shape) != tuple(shape):
            raise InputError(f"{self.prefix}{name} has shape {tuple(value.shape)}, the config implies {tuple(shape)}",
                             path=str(self.path))
        self.used.add(name)
        return value

    def unused(self) -> list[str]:
        return sorted(set(self.tensors) - self.used)


__all__ = ["HF_WEIGHTS_FILES", "CheckedTensors", "Opaque", "UnsafeCheckpoint", "hf_folder_tensors", "load_safetensors",
           "load_untrusted", "tensor_dict"]
