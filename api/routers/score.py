"""``POST /v1/score``: log-likelihood and bits per base of sequences, as ``genoseq score`` computes them."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request

from genoseq.pipelines.score import bits_per_base, scored_targets, summarize_log_probs

from ..deps import Service, count_inputs
from ..errors import check_count, encode_sequence
from ..schemas import ScoreRequest, ScoreResponse, SequenceScore

router = APIRouter(prefix="/v1", tags=["score"])


@router.post("/score", response_model=ScoreResponse, summary="Log-likelihood and bits/base per sequence",
             responses={422: {"description": "bad sequence (field and position named), too long or too many"}})
async def score(body: ScoreRequest, request: Request, service: Service) -> ScoreResponse:
    """Each sequence is scored like a FASTA record by ``genoseq score`` (same ``chunk_size`` and
    ``context``): position 1 has no context and N bases are never scored."""
    import torch

    limits = service.settings.limits
    check_count(["sequences"], len(body.sequences), limits.max_sequences, "sequences")
    tokenizer = service.lm.tokenizer
    encoded = [torch.from_numpy(encode_sequence(tokenizer, seq, ["sequences", i], limits.max_sequence_length)
                                .astype("int64"))
               for i, seq in enumerate(body.sequences)]
    count_inputs(request, len(encoded), sum(len(ids) for ids in encoded))
    all_log_probs = await asyncio.gather(*(service.batcher.score(ids) for ids in encoded))

    names = body.names or [f"#{i + 1}" for i in range(len(encoded))]
    scores = []
    for name, ids, log_probs in zip(names, encoded, all_log_probs):
        ll, n = summarize_log_probs(ids, log_probs)
        per_token = None
        if body.token_log_probs:
            scored = scored_targets(ids)
            per_token = [None] + [float(lp) if ok else None for lp, ok in zip(log_probs.tolist(), scored.tolist())]
        bpb = bits_per_base(ll, n)
        scores.append(SequenceScore(name=name, length=len(ids), scored_bases=n, log_likelihood=ll,
                                    bits_per_base=None if n == 0 else bpb, token_log_probs=per_token))
    return ScoreResponse(model=service.model_name, scores=scores)
