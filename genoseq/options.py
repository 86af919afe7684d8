"""Option groups that several commands share, as dataclasses, and :func:`coerce`.

A command takes a group as one typed parameter (``table: TableInput``); the CLI nests its
fields under the parameter's name, as it nests ``pretrain``'s ``--trainer.max_steps``
(``--table.sequence_column seq``, or ``table: {sequence_column: seq}`` in a ``--config`` file),
and, for the groups of :data:`FLAT_GROUPS`, also reads them flat under the names these options
have always had (``--sequence_column seq``, a top-level ``sequence_column:`` key). Python
callers pass an instance or a dict (:func:`coerce`).

Nothing heavy is imported here: the CLI builds its parser from these classes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, TypeVar

T = TypeVar("T")


def coerce(cls: type[T], value: Any, default: T | None = None) -> T:
    """An option dataclass from what a caller gave: jsonargparse passes instances, Python
    callers may pass dicts, read over ``default`` (the command's own defaults) when given, else
    over the class's. Always a copy, so a signature's default instance is never changed."""
    if isinstance(value, cls):
        return replace(value)
    if isinstance(value, dict):
        return replace(default, **value) if default is not None else cls(**value)
    raise TypeError(f"expected {cls.__name__} or a dict, got {type(value).__name__}")


@dataclass
class TableInput:
    """The sequences a command reads: a table, a GenomicBenchmarks folder or a FASTA file.

    Args:
        input: TSV/CSV (a ``sequence`` column; ``label`` and ``name`` optional), GenomicBenchmarks
            folder or FASTA file (told apart by its content).
        split: Split to read from a GenomicBenchmarks folder.
        sequence_column: Sequence column of a table.
        label_column: Label column of a table.
    """

    input: str
    split: str = "test"
    sequence_column: str = "sequence"
    label_column: str = "label"

    def read(self):
        """Names, sequences and labels (None when unlabelled): a
        :class:`genoseq.tables.SequenceInputs`."""
        from genoseq.tables import read_sequence_inputs

        return read_sequence_inputs(self.input, split=self.split, sequence_column=self.sequence_column,
                                    label_column=self.label_column)


@dataclass
class OptionalTableInput(TableInput):
    """:class:`TableInput` for a command that can take its sequences from elsewhere too (regions
    of a genome): ``input`` may be left out.

    Args:
        input: TSV/CSV (a ``sequence`` column; ``label`` and ``name`` optional), GenomicBenchmarks
            folder or FASTA file (told apart by its content).
    """

    input: str | None = None


@dataclass
class EmbeddingOptions:
    """How a language model's hidden states become one vector per sequence
    (:class:`genoseq.models.embedding.Embedder`); the defaults are ``genoseq embed``'s.

    Args:
        layer: Hidden layer: -1 after the last block, k after k blocks (0 = token embeddings),
            negative from the top; null for the final normed output.
        pooling: ``mean`` over positions, ``last`` token, ``echo`` (the sequence fed twice, the
            second copy mean-pooled), ``phase`` (a mean per codon phase), ``ends`` (means of the
            first and last 16 tokens), or a ``+`` combination such as ``phase+ends``.
        rc_average: Average each sequence's vector with its reverse complement's (strand-invariant).
        rc_concat: Concatenate each sequence's vector with its reverse complement's (twice the
            width): the reverse strand's states at the start of a sequence have seen the rest of
            it, which a causal model's forward states have not.
        max_length: Truncate longer sequences to their first ``max_length`` bases.
    """

    layer: int | None = -1
    pooling: str = "mean"
    rc_average: bool = False
    rc_concat: bool = False
    max_length: int | None = None


# The groups whose fields the CLI also reads flat (``--sequence_column`` as well as
# ``--table.sequence_column``): their field names are the options' names from before they were
# grouped, and no command has another option of the same name.
FLAT_GROUPS: tuple[type, ...] = (TableInput, EmbeddingOptions)

__all__ = ["EmbeddingOptions", "FLAT_GROUPS", "OptionalTableInput", "TableInput", "coerce"]
