"""``POST /v1/embed``: one pooled vector per sequence, as ``genoseq embed`` writes them."""

from __future__ import annotations

from fastapi import APIRouter, Request

from ..deps import Service, request_sequences
from ..errors import BUSY_RESPONSE
from ..schemas import EmbedRequest, EmbedResponse

router = APIRouter(prefix="/v1", tags=["embed"])


@router.post("/embed", response_model=EmbedResponse, summary="Pooled embeddings of sequences",
             responses={422: {"description": "bad sequence (field and position named), bad layer, too long or too many"},
                        **BUSY_RESPONSE})
async def embed(body: EmbedRequest, request: Request, service: Service) -> EmbedResponse:
    """Layer, pooling and strand averaging or concatenation as in :mod:`genoseq.models.embedding`;
    each sequence's vector is the one it gets alone (sequences are batched with other requests'
    of the same length and options, never padded)."""
    limits = service.settings.limits
    encoded = request_sequences(request, service.lm.tokenizer, body.sequences, limits)
    vectors = await service.embed(encoded, (body.layer, body.pooling, body.rc_average, body.rc_concat))
    return EmbedResponse(model=service.model_name, dim=int(vectors[0].shape[0]), layer=body.layer,
                         pooling=body.pooling, rc_average=body.rc_average, rc_concat=body.rc_concat,
                         embeddings=[v.tolist() for v in vectors])
