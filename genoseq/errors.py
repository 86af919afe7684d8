"""Errors raised on bad user input.

Every reader and the tokenizer raise :class:`InputError` (a ``ValueError``) with the file, the
record and the line or position that is wrong, so that a user can find the problem without a
traceback. The CLI prints the message and exits with status 2.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input: names the file, record and line/position where known."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        record: str | None = None,
        line: int | None = None,
        position: int | None = None,
        field: "str | tuple[str | int, ...] | None" = None,
        kind: str = "input_error",
    ) -> None:
        self.path = None if path is None else str(path)
        # The option at fault, as the command line and the REST API both name it ("condition",
        # ("variants", 2, "ref")); the API answers 422 with it as the error's location.
        self.field = (field,) if isinstance(field, (str, int)) else (tuple(field) if field is not None else None)
        self.kind = kind
        self.record = record
        self.line = line
        self.position = position
        where = []
        if self.path is not None:
            where.append(self.path)
        if record is not None:
            where.append(f"record {record!r}")
        if line is not None:
            where.append(f"line {line}")
        if position is not None:
            where.append(f"position {position}")
        self.reason = message
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
