"""Error responses: every bad request gets a 4xx naming the field, never a 500 or a traceback.

All error bodies have FastAPI's shape, ``{"detail": [{"loc": [...], "msg": "...", "type": "..."}]}``
for input errors (``loc`` like ``["body", "sequences", 2]``) and ``{"detail": "..."}`` otherwise.
Validation errors are returned without the offending input (a rejected sequence can be megabytes).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from genoseq.errors import InputError

from .batching import Overloaded, ShuttingDown
from .service import NotLoaded, NotReady

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from genoseq.tokenizer import Tokenizer

log = logging.getLogger("genoseq.api")

Loc = Sequence["str | int"]


# The OpenAPI entry of a route whose work is queued (Overloaded and ShuttingDown answer 503).
BUSY_RESPONSE = {503: {"description": "the server is busy (too many sequences waiting) or shutting down; "
                                      "retry after the Retry-After header's seconds"}}


class RequestInputError(ValueError):
    """A semantically bad request (422): ``loc`` names the field as FastAPI's validation does."""

    def __init__(self, loc: Loc, message: str, kind: str = "value_error") -> None:
        super().__init__(message)
        self.loc = ["body", *loc]
        self.message = message
        self.kind = kind


def field_name(loc: Loc) -> str:
    """``["sequences", 2]`` -> ``sequences[2]``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def encode_sequence(tokenizer: "Tokenizer", sequence: str, loc: Loc, max_length: int) -> "np.ndarray":
    """Token ids of one request sequence, or a :class:`RequestInputError` naming field and position."""
    where = field_name(loc)
    if not sequence:
        raise RequestInputError(loc, f"{where}: empty sequence", "empty_sequence")
    if len(sequence) > max_length:
        raise RequestInputError(loc, f"{where}: sequence of {len(sequence)} bases is longer than the limit "
                                     f"of {max_length}", "too_long")
    try:
        return tokenizer.encode(sequence)
    except InputError as err:
        raise RequestInputError(loc, f"{where}: {err.reason} (position {err.position})", "invalid_character") from None


def check_count(loc: Loc, count: int, limit: int, what: str) -> None:
    if count > limit:
        raise RequestInputError(loc, f"{field_name(loc)}: {count} {what} is more than the limit of {limit} per request",
                                "too_many")


def _clean(errors: list[dict]) -> list[dict]:
    """Validation errors without the rejected input (which may be huge) or non-JSON context."""
    out = []
    for err in errors:
        item = {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "value_error")}
        ctx = err.get("ctx")
        if ctx:
            item["ctx"] = {k: v if isinstance(v, (str, int, float, bool, type(None))) else str(v) for k, v in ctx.items()}
        out.append(item)
    return out


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _clean(list(exc.errors()))}, status_code=422)

    @app.exception_handler(RequestInputError)
    async def _request_input(request: Request, exc: RequestInputError) -> JSONResponse:
        return JSONResponse({"detail": [{"loc": exc.loc, "msg": exc.message, "type": exc.kind}]}, status_code=422)

    @app.exception_handler(InputError)
    async def _input(request: Request, exc: InputError) -> JSONResponse:
        if exc.field is not None:  # an option check of the library, naming the request field
            return JSONResponse({"detail": [{"loc": ["body", *exc.field], "msg": exc.reason, "type": exc.kind}]},
                                status_code=422)
        # Raised by a pipeline on input the route did not check first. The server's file paths
        # stay out of the message; the record and position stay in.
        where = [f"record {exc.record!r}"] if exc.record is not None else []
        where += [f"position {exc.position}"] if exc.position is not None else []
        message = f"{', '.join(where)}: {exc.reason}" if where else exc.reason
        return JSONResponse({"detail": [{"loc": ["body"], "msg": message, "type": "input_error"}]}, status_code=422)

    @app.exception_handler(NotReady)
    async def _not_ready(request: Request, exc: NotReady) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(Overloaded)
    async def _overloaded(request: Request, exc: Overloaded) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": str(exc.retry_after)})

    @app.exception_handler(ShuttingDown)
    async def _shutting_down(request: Request, exc: ShuttingDown) -> JSONResponse:
        return JSONResponse({"detail": "the server is shutting down"}, status_code=503,
                            headers={"Retry-After": "5", "Connection": "close"})

    @app.exception_handler(NotLoaded)
    async def _not_loaded(request: Request, exc: NotLoaded) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error in %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal server error (logged on the server)"}, status_code=500)
