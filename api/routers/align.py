"""``POST /v1/align``: reads -> alignments, as ``genoseq align map`` writes them.

The route maps through :class:`genoseq.tasks.align.Aligner`, the same object ``map_reads``
uses (tokenise, embed, faiss search, candidate regions, edlib), on the model thread; a request's
reads form one batch of ``genoseq align map`` (at most ``max_reads``, its batch size by default),
so the records are the ones the CLI writes for the same reads and options.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Request

from ..deps import count_inputs, with_index
from ..errors import RequestInputError, check_count, encode_sequence
from ..schemas import AlignRequest, AlignResponse, ReadAlignment
from ..service import ModelService

router = APIRouter(prefix="/v1", tags=["align"])


@router.post("/align", response_model=AlignResponse, summary="Map reads to the indexed reference",
             responses={404: {"description": "no read index loaded"},
                        422: {"description": "bad read (field and position named), quality, name, option, "
                                             "too long or too many"}})
async def align(body: AlignRequest, request: Request,
                service: Annotated[ModelService, Depends(with_index)]) -> AlignResponse:
    """Per read: contig, 1-based position, strand, CIGAR, MAPQ, NM, AS and XS, or unmapped; with
    ``sam: true`` also the SAM line ``genoseq align map`` writes and the header. Options left
    null take ``genoseq align map``'s defaults."""
    from genoseq import sam

    limits = service.settings.limits
    check_count(["sequences"], len(body.sequences), limits.max_reads, "reads")
    aligner = service.aligner
    for i, seq in enumerate(body.sequences):
        encode_sequence(aligner.tokenizer, seq, ["sequences", i], limits.max_sequence_length)
    qualities = body.qualities or [None] * len(body.sequences)
    for i, (seq, qual) in enumerate(zip(body.sequences, qualities)):
        if qual is not None and len(qual) != len(seq):
            raise RequestInputError(["qualities", i], f"qualities[{i}]: {len(qual)} quality characters for a read of "
                                                      f"{len(seq)} bases", "length_mismatch")
    names = body.names or [f"#{i + 1}" for i in range(len(body.sequences))]
    options = {k: v for k, v in (("top_k", body.top_k), ("rescue_k", body.rescue_k), ("flank", body.flank),
                                 ("max_error_rate", body.max_error_rate), ("extended_cigar", body.extended_cigar))
               if v is not None}
    aligner = aligner.with_options(**options)  # shares the loaded index and reference
    count_inputs(request, len(body.sequences), sum(map(len, body.sequences)))

    def run():  # on the model thread, which owns the encoder
        records = aligner.map(list(zip(names, body.sequences, qualities)))
        lines = [rec.to_segment(service.align_header).to_string() if body.sam else None for rec in records]
        return records, lines

    records, lines = await service.run(run)
    contigs = aligner.reference.names
    alignments = []
    for rec, line in zip(records, lines):
        mapped = rec.mapped
        alignments.append(ReadAlignment(
            name=rec.name, mapped=mapped, flag=rec.flag, mapq=rec.mapq,
            contig=contigs[rec.contig] if mapped else None, pos=rec.pos + 1 if mapped else None,
            strand=("-" if rec.reverse else "+") if mapped else None,
            cigar=sam.cigar_string(rec.cigar) if mapped else None, edit_distance=rec.nm,
            alignment_score=rec.alignment_score, second_best_score=rec.second_best_score, sam=line))
    return AlignResponse(index=Path(service.settings.index).name, top_k=aligner.top_k, rescue_k=aligner.rescue_k,
                         flank=aligner.flank,
                         max_error_rate=aligner.max_error_rate, extended_cigar=aligner.extended_cigar,
                         alignments=alignments, sam_header=str(service.align_header) if body.sam else None)
