"""``POST /v1/score``: log-likelihood and bits per base of sequences, as ``genoseq score`` computes them."""

from __future__ import annotations

from fastapi import APIRouter, Request

from genoseq.tasks.scoring import likelihood_kind, per_base_log_probs, summarize

from ..deps import Service, request_sequences
from ..errors import BUSY_RESPONSE
from ..schemas import ScoreRequest, ScoreResponse, SequenceScore

router = APIRouter(prefix="/v1", tags=["score"])


@router.post("/score", response_model=ScoreResponse, summary="Log-likelihood and bits/base per sequence",
             responses={422: {"description": "bad sequence (field and position named), too long or too many"},
                        **BUSY_RESPONSE})
async def score(body: ScoreRequest, request: Request, service: Service) -> ScoreResponse:
    """Each sequence is scored like a FASTA record by ``genoseq score`` (same ``chunk_size`` and
    ``context``): position 1 has no context and N bases are never scored. A bidirectional (masked)
    model gives pseudo-log-likelihoods (``likelihood: "pseudo"``; position 1 scored too)."""
    import torch

    limits = service.settings.limits
    encoded = [torch.from_numpy(ids.astype("int64"))
               for ids in request_sequences(request, service.lm.tokenizer, body.sequences, limits)]
    all_log_probs = await service.score(encoded)  # batched with concurrent requests' sequences

    names = body.names or [f"#{i + 1}" for i in range(len(encoded))]
    scores = []
    for name, ids, log_probs in zip(names, encoded, all_log_probs):
        found = summarize(name, ids, log_probs)
        scores.append(SequenceScore(name=name, length=found.length, scored_bases=found.scored_bases,
                                    log_likelihood=found.log_likelihood,
                                    bits_per_base=None if found.scored_bases == 0 else found.bits_per_base,
                                    token_log_probs=per_base_log_probs(ids, log_probs) if body.token_log_probs else None))
    return ScoreResponse(model=service.model_name, likelihood=likelihood_kind(service.lm), scores=scores)
