"""``POST /v1/annotate``: genes and RNA features, with per-base probabilities, from the loaded segmenter."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Request

from ..deps import request_sequences, with_segmenter
from ..schemas import AnnotatedFeature, AnnotateRequest, AnnotateResponse, SequenceAnnotation
from ..service import ModelService

router = APIRouter(prefix="/v1", tags=["annotate"])


@router.post("/annotate", response_model=AnnotateResponse, summary="Per-base annotation and features of each sequence",
             responses={404: {"description": "no segmenter loaded"},
                        422: {"description": "bad sequence (field and position named), too long or too many"}})
async def annotate(body: AnnotateRequest, request: Request,
                   service: Annotated[ModelService, Depends(with_segmenter)]) -> AnnotateResponse:
    """The features ``genoseq annotate predict`` writes (``tasks.genome_annotation.annotate_sequences``)."""
    from genoseq.tasks.genome_annotation import annotate_sequences

    seg = service.segmenter
    limits = service.settings.limits
    encoded = request_sequences(request, seg.tokenizer, body.sequences, limits)
    results = await service.run(annotate_sequences, seg, encoded, body.names,
                                decode_options={"min_gene_length": body.min_gene_length})
    classes = list(seg.classes)
    out = []
    for result, ids in zip(results, encoded):
        probs = None
        if body.probabilities:
            probs = {strand: {c: [round(float(x), 4) for x in result.probs[row, :, k]] for k, c in enumerate(classes)}
                     for row, strand in ((0, "+"), (1, "-"))}
        features = [AnnotatedFeature(type=f.type, start=f.start, end=f.end, strand=f.strand, score=float(f.score or 0.0),
                                     partial=bool(getattr(f, "partial", False))) for f in result.features]
        out.append(SequenceAnnotation(name=result.contig, length=len(ids), features=features, probabilities=probs))
    return AnnotateResponse(segmenter=Path(service.settings.segmenter).name, classes=classes, annotations=out)
