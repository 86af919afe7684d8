"""The ``genoseq`` command line.

Each subcommand is a typed pipeline function bound through jsonargparse, as Lightning's own
CLI does: every option is also a YAML config key (``--config cfg.yaml``), nested dataclass
options read as ``--trainer.max_steps 500``; the option groups of :data:`genoseq.options.FLAT_GROUPS`
read both nested and flat (``--table.sequence_column seq`` or ``--sequence_column seq``).
Pipeline modules import torch inside their functions, so ``genoseq --help`` stays fast.

A failed command prints one line, ``genoseq: error: ...`` (or ``genoseq: stopped ...``), and no
traceback; its exit status says why:

===  =========================================================================================
0    done
1    the job could not finish writing: the disk or its quota is full (the line names the output)
2    bad input or usage: an input error naming file, record and line; a missing input file; an
     output path that cannot be written (read-only file system, permission denied)
130  stopped by Ctrl-C (SIGINT)
143  stopped by SIGTERM (128 + 15, as a shell reports a process the signal ended)
===  =========================================================================================

However it fails, nothing is half-written: every output is written under a temporary name and
renamed into place when complete (:mod:`genoseq.runtime`), and SIGTERM is raised in the job as
:class:`Terminated`, so those temporary files are removed on the way out, as on Ctrl-C. A
second SIGTERM ends the process at once. ``genoseq serve`` keeps SIGTERM for itself (it answers
the requests in flight, then ends by the signal). Other errors are bugs and keep their traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import importlib
import inspect
import os
import signal
import sys
import threading
from typing import Callable

# subcommand -> "module:function" (or a nested mapping for a group of subcommands).
# Lazy strings keep this table cheap; modules are imported only when the parser is built.
COMMANDS: dict[str, str | dict[str, str]] = {
    "prepare": "genoseq.pipelines.prepare:prepare",
    "subset": "genoseq.pipelines.subset:subset",
    "vep": "genoseq.pipelines.vep:vep",
    "embed": "genoseq.pipelines.embed:embed",
    "classify": {
        "_help": "Fine-tune or probe a sequence classifier; predict and evaluate with it.",
        "fit": "genoseq.pipelines.classify:fit",
        "predict": "genoseq.pipelines.classify:predict",
        "evaluate": "genoseq.pipelines.classify:evaluate",
    },
    "pretrain": "genoseq.pipelines.pretrain:pretrain",
    "convert": {
        "_help": "Import a published model (HyenaDNA, Evo 2, Caduceus) as a genoseq model folder.",
        "hyenadna": "genoseq.pipelines.convert:hyenadna",
        "evo2": "genoseq.pipelines.convert:evo2",
        "caduceus": "genoseq.pipelines.convert:caduceus",
    },
    "score": "genoseq.pipelines.score:score",
    "serve": "genoseq.api.serve:serve",
    "generate": {
        "_help": "Conditional fine-tuning and constrained, oracle-guided sequence design.",
        "fit": "genoseq.pipelines.generate:fit",
        "sample": "genoseq.pipelines.generate:sample",
    },
    "annotate": {
        "_help": "Per-base genome annotation: train a segmenter on a genome + GFF3/GenBank, call features, score them.",
        "fit": "genoseq.pipelines.annotate:fit",
        "predict": "genoseq.pipelines.annotate:predict",
        "evaluate": "genoseq.pipelines.annotate:evaluate",
    },
    "interpret": {
        "_help": "Which bases matter: language-model mutagenesis and dependency maps, classifier attributions and motifs.",
        "ism": "genoseq.pipelines.interpret:ism",
        "dependencies": "genoseq.pipelines.interpret:dependencies",
        "attributions": "genoseq.pipelines.interpret_classifier:attributions",
        "motifs": "genoseq.pipelines.interpret_classifier:motifs",
    },
    "align": {
        "_help": "Embed-Search-Align: train a read encoder, index a reference, map reads to SAM/BAM.",
        "train": "genoseq.pipelines.align:train",
        "index": "genoseq.pipelines.align:index",
        "map": "genoseq.pipelines.align:map_reads",
    },
}

DESCRIPTION = ("genoseq: DNA language models at single-nucleotide resolution. "
               "Each subcommand takes --config FILE.yaml and --help.")

# `genoseq generate --model M --prompt ACGT ...` (the original one-command form) means
# `genoseq generate sample ...`; there `--num` and `--length` name --num_samples / --max_new_tokens.
GENERATE_ALIASES = {"--num": "--num_samples", "--length": "--max_new_tokens"}


def _resolve(spec: str | dict) -> Callable | dict:
    if isinstance(spec, dict):
        return {name: sub if name == "_help" else _resolve(sub) for name, sub in spec.items()}
    module, func = spec.split(":")
    return getattr(importlib.import_module(module), func)


def _available_commands() -> dict:
    found = {}
    for name, spec in COMMANDS.items():
        try:
            found[name] = _resolve(spec)
        except ModuleNotFoundError as err:  # a command whose module is not built yet
            if not err.name or not err.name.startswith("genoseq"):
                raise
    return found


def add_flat_options(parser, function: Callable) -> None:
    """Let ``parser`` (the one of ``function``'s command) read the fields of each option group of
    :data:`genoseq.options.FLAT_GROUPS` that ``function`` takes flat too: ``--sequence_column``
    (and a top-level ``sequence_column`` key of a config file) as well as
    ``--table.sequence_column``, as another option string of the same argument."""
    from genoseq.options import FLAT_GROUPS

    for name, param in inspect.signature(function).parameters.items():
        group = param.annotation
        if isinstance(group, str):  # postponed annotations: the group's name in the command's module
            group = function.__globals__.get(group)
        if not (isinstance(group, type) and issubclass(group, FLAT_GROUPS)):
            continue
        for field in dataclasses.fields(group):
            flat = f"--{field.name}"
            if flat in parser._option_string_actions:
                raise ValueError(f"{function.__module__}.{function.__name__}: --{name}.{field.name} cannot also be "
                                 f"read as {flat}, an option the command already has")
            action = parser._option_string_actions[f"--{name}.{field.name}"]
            action.option_strings.append(flat)
            parser._option_string_actions[flat] = action


def parser_class():
    """jsonargparse's ``ArgumentParser`` that also reads the option groups flat (:func:`add_flat_options`)."""
    from jsonargparse import ArgumentParser

    class Parser(ArgumentParser):
        def add_function_arguments(self, function, *args, **kwargs):
            added = super().add_function_arguments(function, *args, **kwargs)
            add_flat_options(self, function)
            return added

    return Parser


def _cli_options() -> dict:
    return {"as_positional": False, "description": DESCRIPTION, "parser_class": parser_class()}


def build_parser():
    """The ``genoseq`` parser as :func:`main` builds it, without parsing or running anything."""
    from jsonargparse import auto_parser

    return auto_parser(_available_commands(), **_cli_options())


def normalize_option_names(args: list[str]) -> list[str]:
    """Accept ``--max-new-tokens`` as well as ``--max_new_tokens`` (and ``--a.b-c`` as ``--a.b_c``)."""
    out = []
    for arg in args:
        if arg.startswith("--") and len(arg) > 2:
            name, eq, value = arg[2:].partition("=")
            arg = "--" + name.replace("-", "_") + eq + value
        out.append(arg)
    return out


def rewrite_generate_args(args: list[str]) -> list[str]:
    """Read ``generate`` not followed by ``fit``, ``sample`` or a help flag as ``generate sample``,
    and the ``--num`` / ``--length`` aliases of ``generate sample`` (documented in its help)."""
    if not args or args[0] != "generate":
        return args
    rest = args[1:]
    if rest and rest[0] in ("fit", "-h", "--help"):
        return args
    if rest and rest[0] == "sample":
        rest = rest[1:]
    out = []
    for arg in rest:
        name, eq, value = arg.partition("=")
        out.append(GENERATE_ALIASES.get(name, name) + eq + value)
    return ["generate", "sample", *out]


class Terminated(BaseException):
    """SIGTERM, raised in the running job as Ctrl-C raises ``KeyboardInterrupt``: every ``finally``
    and atomic writer cleans up on the way out. Not an ``Exception``, so no ``except Exception``
    in a job swallows it."""


def _raise_terminated(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    raise Terminated()


# Commands that stop on SIGTERM by themselves: the server answers the requests in flight, then
# uvicorn ends the process by the signal it caught.
OWN_SIGTERM = frozenset({"serve"})


@contextlib.contextmanager
def _sigterm_raises(args: list[str]):
    """SIGTERM raises :class:`Terminated` inside the block (signals go to the main thread only),
    unless the command ``args`` run is one of :data:`OWN_SIGTERM`."""
    if threading.current_thread() is not threading.main_thread() or args[:1] and args[0] in OWN_SIGTERM:
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def write_error(err: OSError) -> tuple[str, int] | None:
    """The one-line message and exit status of an ``OSError`` that a user can act on: a full disk
    (status 1), a read-only or forbidden path (2); None for any other (a bug: its traceback shows).
    The atomic writers name the output, not their temporary file (:mod:`genoseq.runtime`)."""
    from genoseq.runtime import WRITE_ERRNOS

    if err.errno not in WRITE_ERRNOS:
        return None
    path = err.filename or "the output"
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        where = f"into {path}" if os.path.isdir(path) else path  # one of several outputs there
        return f"no space left on device writing {where}: the disk (or the quota of its folder) is full", 1
    if err.errno == errno.EFBIG:
        return f"{path}: file too large for its file system", 1
    if err.errno == errno.EROFS:
        return f"{path}: read-only file system: cannot write there", 2
    return f"{path}: {err.strerror or 'permission denied'}", 2


def run(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``), errors raised as they are."""
    from jsonargparse import auto_cli

    from genoseq import __version__

    args = rewrite_generate_args(normalize_option_names(sys.argv[1:] if argv is None else list(argv)))
    if args in (["--version"], ["-V"]):
        print(f"genoseq {__version__}")
        return 0
    auto_cli(_available_commands(), args=args, **_cli_options())
    return 0


def _tell(line: str) -> None:
    """Print a failure's one line on stderr, on a line of its own (a bar's open line ends first)."""
    from genoseq.progress import end_bar_line

    end_bar_line()
    print(f"genoseq: {line}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """:func:`run`, a failure told in one line on stderr; the exit status (module docstring)."""
    from genoseq.errors import InputError

    with _sigterm_raises(sys.argv[1:] if argv is None else list(argv)):
        try:
            return run(argv)
        except InputError as err:
            _tell(f"error: {err}")
            return 2
        except FileNotFoundError as err:
            _tell(f"error: {err.filename or ''}: {err.strerror or err}")
            return 2
        except OSError as err:
            known = write_error(err)
            if known is None:
                raise
            _tell(f"error: {known[0]}")
            return known[1]
        except KeyboardInterrupt:
            _tell("interrupted")
            return 130
        except Terminated:
            _tell("stopped by SIGTERM before the job finished: no output was written (a training job's last "
                  "checkpoint, where it wrote one, stays for --resume true)")
            return 128 + signal.SIGTERM


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
