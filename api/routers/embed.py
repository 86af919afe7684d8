"""``POST /v1/embed``: one pooled vector per sequence, as ``genoseq embed`` writes them."""

from __future__ import annotations

from fastapi import APIRouter, Request

from ..deps import Service, request_sequences
from ..schemas import EmbedRequest, EmbedResponse

router = APIRouter(prefix="/v1", tags=["embed"])


@router.post("/embed", response_model=EmbedResponse, summary="Pooled embeddings of sequences",
             responses={422: {"description": "bad sequence (field and position named), bad layer, too long or too many"}})
async def embed(body: EmbedRequest, request: Request, service: Service) -> EmbedResponse:
    """Layer, pooling and strand averaging or concatenation as in :mod:`genoseq.models.embedding`."""
    from genoseq.models.embedding import Embedder

    limits = service.settings.limits
    encoded = request_sequences(request, service.lm.tokenizer, body.sequences, limits)

    def run():
        embedder = Embedder(service.lm, layer=body.layer, pooling=body.pooling, rc_average=body.rc_average,
                            rc_concat=body.rc_concat, batch_size=limits.max_batch_rows, device=service.device)
        return embedder.embed(encoded)

    vectors = await service.run(run)
    return EmbedResponse(model=service.model_name, dim=int(vectors.shape[1]), layer=body.layer, pooling=body.pooling,
                         rc_average=body.rc_average, rc_concat=body.rc_concat, embeddings=vectors.tolist())
