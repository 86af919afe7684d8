"""``POST /v1/generate``: designs from the conditional model, with constraints and an oracle.

The route runs :func:`genoseq.tasks.generation.sample_designs` (what ``genoseq generate
sample`` runs) with the request's options on the server's generator, so a seed gives the same
designs as the command line. The oracle is the server's classifier (``--classifier``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Request

from ..deps import count_inputs, with_generator
from ..errors import RequestInputError, encode_sequence
from ..schemas import Design, GenerateRequest, GenerateResponse
from ..service import ModelService

router = APIRouter(prefix="/v1", tags=["generate"])


def _check_limits(body: GenerateRequest, service: ModelService) -> None:
    """The server's limits and what it was started with; the options themselves are the library's to check."""
    limits = service.settings.limits
    if body.num_samples > limits.max_designs:
        raise RequestInputError(["num_samples"], f"num_samples: {body.num_samples} is more than the limit of "
                                                 f"{limits.max_designs} designs per request", "too_many")
    if body.max_new_tokens > limits.max_new_tokens:
        raise RequestInputError(["max_new_tokens"], f"max_new_tokens: {body.max_new_tokens} is more than the limit "
                                                    f"of {limits.max_new_tokens}", "too_long")
    if body.prompt:
        encode_sequence(service.generator.lm.tokenizer, body.prompt, ["prompt"], limits.max_sequence_length)
    if body.oracle and service.classifier is None:
        raise RequestInputError(["oracle"], "oracle: the server has no classifier to use as the oracle "
                                            "(start it with --classifier)", "no_oracle")


@router.post("/generate", response_model=GenerateResponse, summary="Sample designs with constraints and an oracle",
             responses={404: {"description": "no generator loaded"},
                        422: {"description": "bad option (field named), or no design met the constraints"}})
async def generate(body: GenerateRequest, request: Request,
                   service: Annotated[ModelService, Depends(with_generator)]) -> GenerateResponse:
    from genoseq.design import DesignConstraints, gc_content
    from genoseq.tasks.generation import SampleOptions, sample_designs

    _check_limits(body, service)
    count_inputs(request, body.num_samples, body.num_samples * (len(body.prompt) + body.max_new_tokens))
    options = SampleOptions(
        prompt=body.prompt, max_new_tokens=body.max_new_tokens, num_samples=body.num_samples,
        temperature=body.temperature, top_k=body.top_k, top_p=body.top_p, seed=body.seed, condition=body.condition,
        max_attempts=body.max_attempts, oracle_class=body.oracle_class, select=body.select,
        oversample=body.oversample, refine_rounds=body.refine_rounds, refine_span=body.refine_span,
        constraints=DesignConstraints(gc_min=body.gc_min, gc_max=body.gc_max, forbidden=tuple(body.forbid),
                                      max_homopolymer=body.max_homopolymer),
    )
    oracle = service.classifier if body.oracle else None
    designs = await service.run(sample_designs, service.generator.lm, options, oracle)
    p_oracle = designs.p_oracle
    out = [Design(sequence=seq, gc=gc_content(seq), oracle_p=None if p_oracle is None else float(p_oracle[i]))
           for i, seq in enumerate(designs.sequences)]
    return GenerateResponse(generator=Path(service.generator.path).name, designs=out, attempts=designs.attempts,
                            rejected=designs.rejected, rejected_by_reason=designs.rejected_by_reason,
                            shortfall=designs.shortfall, refinement_improved=designs.refinement_improved)
