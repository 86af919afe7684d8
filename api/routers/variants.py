"""``POST /v1/variants``: zero-shot variant effects, the scores ``genoseq vep`` writes.

A variant is a 1-based position with REF and ALT alleles, either in a sequence sent with it or
on a contig of the server's reference genome (``--reference``). Unlike ``genoseq vep``, which
annotates a VCF and marks unscorable records, the API refuses a request with a bad variant (422
naming it): a REF that does not match, a position past the end, an unknown contig, a bad base
or an allele longer than half the window.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from ..deps import Service, count_inputs
from ..errors import RequestInputError, check_count, encode_sequence
from ..schemas import VariantScore, VariantsRequest, VariantsResponse

router = APIRouter(prefix="/v1", tags=["variants"])


@router.post("/variants", response_model=VariantsResponse, summary="Variant effect scores (log-likelihood ratios)",
             responses={422: {"description": "bad variant (field named): REF mismatch, position, contig, bases, length"}})
async def variants(body: VariantsRequest, request: Request, service: Service) -> VariantsResponse:
    """LLR = log P(alt window) - log P(ref window) over a window centred on each variant, or a
    bidirectional model's masked marginal (:func:`genoseq.tasks.variants.score_variants`, as
    ``genoseq vep``: same window, strands and scoring; ``score`` says which)."""
    from genoseq.genome import MemoryGenome
    from genoseq.tasks.variants import Variant, require_scored, score_description, score_variants

    limits = service.settings.limits
    check_count(["variants"], len(body.variants), limits.max_variants, "variants")
    sent: dict[str, str] = {}  # one contig per distinct sequence, so shared windows are scored once
    sequences: dict = {}
    contigs: list[str] = []
    for i, v in enumerate(body.variants):
        if v.sequence is None:
            if service.reference is None:
                raise RequestInputError(["variants", i, "chrom"], f"variants[{i}].chrom: the server has no reference "
                                        "genome (started without --reference); send the 'sequence' instead", "no_reference")
            contigs.append(v.chrom)
            continue
        name = sent.get(v.sequence)
        if name is None:
            name = sent[v.sequence] = f"#{len(sent) + 1}"
            sequences[name] = encode_sequence(service.lm.tokenizer, v.sequence, ["variants", i, "sequence"],
                                              limits.max_sequence_length)
        contigs.append(name)
    in_request = MemoryGenome(sequences, path="<request>")
    count_inputs(request, len(body.variants), sum(len(ids) for ids in sequences.values()))

    def run():  # on the model thread, which also owns the reference genome's file handle
        effects: list = [None] * len(body.variants)
        for genome, given in ((in_request, False), (service.reference, True)):
            chosen = [i for i, v in enumerate(body.variants) if (v.chrom is not None) == given]
            if chosen:
                found = score_variants(service.lm, genome, [Variant(contigs[i], body.variants[i].pos, body.variants[i].ref,
                                                                    body.variants[i].alt) for i in chosen],
                                       window_length=body.window_length, strands=body.strands, device=service.device)
                for i, e in zip(chosen, found):
                    effects[i] = e
        return effects

    effects = await service.run(run)
    require_scored(effects)
    out = [VariantScore(chrom=v.chrom, pos=v.pos, ref=v.ref, alt=v.alt, llr=e.llr, llr_forward=e.llr_forward,
                        llr_reverse=e.llr_reverse) for v, e in zip(body.variants, effects)]
    return VariantsResponse(model=service.model_name, window_length=body.window_length, strands=body.strands,
                            score=score_description(service.lm), effects=out)
