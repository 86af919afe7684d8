"""FastAPI dependencies: the loaded models (from app state, never module globals) and API-key auth."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader

from .errors import check_count, encode_sequence
from .service import ModelService, NotLoaded

API_KEY_HEADER = "X-API-Key"
_api_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False,
                               description="The key the server was started with (--api_key / --api_key_file)")


def get_service(request: Request) -> ModelService:
    return request.app.state.service


def ready_service(service: Annotated[ModelService, Depends(get_service)]) -> ModelService:
    """The service once its models are loaded (503 before that, or when loading failed)."""
    service.require_ready()
    return service


Service = Annotated[ModelService, Depends(ready_service)]


def with_classifier(service: Service) -> ModelService:
    if service.classifier is None:
        raise NotLoaded("no classifier is loaded (start the server with --classifier CLF_DIR)")
    return service


def with_generator(service: Service) -> ModelService:
    if service.generator is None:
        raise NotLoaded("no generator is loaded (start the server with --generator GEN_DIR)")
    return service


def with_index(service: Service) -> ModelService:
    if service.aligner is None:
        raise NotLoaded("no read index is loaded (start the server with --index INDEX_DIR)")
    return service


def require_api_key(request: Request, key: Annotated[str | None, Security(_api_key_header)]) -> None:
    """401 unless the X-API-Key header equals the configured key (compared in constant time)."""
    expected: str = request.app.state.service.settings.api_key
    if key is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, f"missing API key (send it in the {API_KEY_HEADER} header)",
                            headers={"WWW-Authenticate": API_KEY_HEADER})
    if not hmac.compare_digest(key.encode("utf-8"), expected.encode("utf-8")):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid API key",
                            headers={"WWW-Authenticate": API_KEY_HEADER})


def count_inputs(request: Request, sequences: int, bases: int) -> None:
    """Record what a request carried, for the request log (never the sequences themselves)."""
    request.state.n_sequences = sequences
    request.state.n_bases = bases


def request_sequences(request: Request, tokenizer, sequences: list[str], limits) -> list:
    """Token ids of a request's ``sequences``: their number and each one's bases and length
    checked (a 422 naming the field and position), and what was sent recorded for the request log."""
    check_count(["sequences"], len(sequences), limits.max_sequences, "sequences")
    encoded = [encode_sequence(tokenizer, seq, ["sequences", i], limits.max_sequence_length)
               for i, seq in enumerate(sequences)]
    count_inputs(request, len(encoded), sum(len(ids) for ids in encoded))
    return encoded


def with_segmenter(service: Service) -> ModelService:
    if service.segmenter is None:
        raise NotLoaded("no segmenter is loaded (start the server with --segmenter SEG_DIR)")
    return service
