"""``POST /v1/interpret``: which bases matter to the language model (saturation mutagenesis,
dependency maps) or to the loaded classifier (attributions), for a few short sequences."""

from __future__ import annotations

import math
from pathlib import Path

from fastapi import APIRouter, Request

from ..deps import Service, count_inputs, with_classifier
from ..errors import check_count, encode_sequence
from ..schemas import Interpretation, InterpretRequest, InterpretResponse

router = APIRouter(prefix="/v1", tags=["interpret"])


def _rows(matrix, digits: int = 4) -> list[list[float | None]]:
    return [[None if math.isnan(x) else round(float(x), digits) for x in row] for row in matrix.tolist()]


def _values(vector, digits: int = 4) -> list[float | None]:
    return [None if math.isnan(x) else round(float(x), digits) for x in vector.tolist()]


@router.post("/interpret", response_model=InterpretResponse, summary="Per-base importance of each sequence",
             responses={404: {"description": "attributions asked for and no classifier loaded"},
                        422: {"description": "bad sequence or option (field named), too long or too many"}})
async def interpret(body: InterpretRequest, request: Request, service: Service) -> InterpretResponse:
    """``genoseq interpret ism``, ``dependencies`` or ``attributions`` on request sequences (at most
    ``max_interpret_sequences`` of ``max_interpret_length`` bases each)."""
    from genoseq.tasks.interpret.attribution import classifier_attributions
    from genoseq.tasks.interpret.ism import dependency_map, saturation_mutagenesis

    limits = service.settings.limits
    check_count(["sequences"], len(body.sequences), limits.max_interpret_sequences, "sequences")
    if body.method == "attributions":
        model = with_classifier(service).classifier
        name = Path(service.settings.classifier).name
    else:
        model, name = service.lm, service.model_name
    encoded = [encode_sequence(model.tokenizer, seq, ["sequences", i], limits.max_interpret_length)
               for i, seq in enumerate(body.sequences)]
    count_inputs(request, len(encoded), sum(len(ids) for ids in encoded))
    names = body.names or [f"#{i + 1}" for i in range(len(encoded))]
    results = []
    if body.method == "ism":
        found = await service.run(saturation_mutagenesis, model, encoded, radius=body.radius, strands=body.strands,
                                  max_length=limits.max_interpret_length, device=None)
        results = [Interpretation(name=n, length=len(r.llr), llr=_rows(r.llr), importance=_values(r.importance))
                   for n, r in zip(names, found)]
    elif body.method == "dependencies":
        for n, ids in zip(names, encoded):
            found = await service.run(dependency_map, model, ids, strands=body.strands,
                                      max_length=limits.max_interpret_length, device=None)
            results.append(Interpretation(name=n, length=len(ids), dependencies=_rows(found.dep)))
    else:
        found = await service.run(classifier_attributions, model, encoded, method=body.attribution_method,
                                  class_name=body.class_name, n_shuffles=body.n_shuffles, n_steps=body.n_steps)
        for k, n in enumerate(names):
            results.append(Interpretation(
                name=n, length=len(encoded[k]), contributions=_rows(found.contributions[k]), target=found.targets[k],
                probabilities={c: round(float(p), 6) for c, p in zip(found.classes, found.probabilities[k])}))
    return InterpretResponse(model=name, method=body.method, results=results)
