"""``POST /v1/generate``: designs from the conditional model, with constraints and an oracle.

The route runs ``genoseq generate sample`` (:func:`genoseq.pipelines.generate.sample`) with the
request's options, so a seed gives the same designs as the command line. The oracle is the
server's classifier (``--classifier``).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Request

from genoseq.fasta import iter_fasta

from ..deps import count_inputs, with_generator
from ..errors import RequestInputError, encode_sequence
from ..schemas import Design, GenerateRequest, GenerateResponse
from ..service import ModelService

router = APIRouter(prefix="/v1", tags=["generate"])


def _check(body: GenerateRequest, service: ModelService) -> None:
    limits, gen = service.settings.limits, service.generator
    if body.num_samples > limits.max_designs:
        raise RequestInputError(["num_samples"], f"num_samples: {body.num_samples} is more than the limit of "
                                                 f"{limits.max_designs} designs per request", "too_many")
    if body.max_new_tokens > limits.max_new_tokens:
        raise RequestInputError(["max_new_tokens"], f"max_new_tokens: {body.max_new_tokens} is more than the limit "
                                                    f"of {limits.max_new_tokens}", "too_long")
    if body.prompt:
        encode_sequence(service.lm.tokenizer, body.prompt, ["prompt"], limits.max_sequence_length)
    if body.condition is not None and body.condition not in gen.conditions:
        raise RequestInputError(["condition"], f"condition: unknown label {body.condition!r} (the generator knows "
                                               f"{', '.join(gen.conditions) or 'none'})", "unknown_condition")
    wants_oracle = body.oracle or body.select == "top-k" or body.refine_rounds > 0
    if wants_oracle and service.classifier is None:
        raise RequestInputError(["oracle"], "oracle: the server has no classifier to use as the oracle "
                                            "(start it with --classifier)", "no_oracle")
    if wants_oracle and not body.oracle:
        raise RequestInputError(["oracle"], "oracle: select=top-k and refine_rounds need oracle=true", "no_oracle")
    if body.oracle:
        target = body.oracle_class or body.condition
        if target not in service.classifier.classes:
            raise RequestInputError(["oracle_class"], f"oracle_class: {target!r} is not one of the classifier's classes "
                                                      f"{list(service.classifier.classes)}", "unknown_class")
    if body.refine_rounds and body.refine_span > body.max_new_tokens:
        raise RequestInputError(["refine_span"], f"refine_span: {body.refine_span} is longer than max_new_tokens "
                                                 f"({body.max_new_tokens})", "too_long")
    needed = body.num_samples * (body.oversample if body.select == "top-k" else 1)
    if body.max_attempts is not None and body.max_attempts < needed:
        raise RequestInputError(["max_attempts"], f"max_attempts: {body.max_attempts} is fewer than the {needed} "
                                                  "designs needed", "too_small")


@router.post("/generate", response_model=GenerateResponse, summary="Sample designs with constraints and an oracle",
             responses={404: {"description": "no generator loaded"},
                        422: {"description": "bad option (field named), or no design met the constraints"}})
async def generate(body: GenerateRequest, request: Request,
                   service: Annotated[ModelService, Depends(with_generator)]) -> GenerateResponse:
    from genoseq.design import gc_content
    from genoseq.pipelines.generate import sample

    _check(body, service)
    count_inputs(request, body.num_samples, body.num_samples * (len(body.prompt) + body.max_new_tokens))

    def run() -> tuple[dict, list[float | None]]:
        with tempfile.TemporaryDirectory(prefix="genoseq-api-generate-") as tmp:
            fasta = Path(tmp) / "designs.fa"
            result = sample(
                service.generator.path, prompt=body.prompt, max_new_tokens=body.max_new_tokens,
                num_samples=body.num_samples, temperature=body.temperature, top_k=body.top_k, top_p=body.top_p,
                seed=body.seed, condition=body.condition, out=str(fasta), device=str(service.device),
                gc_min=body.gc_min, gc_max=body.gc_max, forbid=list(body.forbid) or None,
                max_homopolymer=body.max_homopolymer, max_attempts=body.max_attempts,
                oracle=service.settings.classifier if body.oracle else None, oracle_class=body.oracle_class,
                select=body.select, oversample=body.oversample, refine_rounds=body.refine_rounds,
                refine_span=body.refine_span, report=False, progress="none",
            )
            # The oracle's probability of each design is in its FASTA header (rounded to 4 places).
            oracle_p = [json.loads(record.description).get("p_oracle") for record in iter_fasta(fasta)]
        return result, oracle_p

    result, oracle_p = await service.run(run)
    designs = [Design(sequence=seq, gc=gc_content(seq), oracle_p=p) for seq, p in zip(result["sequences"], oracle_p)]
    return GenerateResponse(generator=Path(service.generator.path).name, designs=designs, attempts=result["attempts"],
                            rejected=result["rejected"], rejected_by_reason=result["rejected_by_reason"],
                            shortfall=result["shortfall"], refinement_improved=result["refinement_improved"])
