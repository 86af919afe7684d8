"""``POST /v1/variants``: zero-shot variant effects, the scores ``genoseq vep`` writes.

A variant is a 1-based position with REF and ALT alleles, either in a sequence sent with it or
on a contig of the server's reference genome (``--reference``). Unlike ``genoseq vep``, which
annotates a VCF and marks unscorable records, the API refuses a request with a bad variant (422
naming it): a REF that does not match, a position past the end, an unknown contig, a bad base
or an allele longer than half the window.
"""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Request

from genoseq.genome import Genome

from ..deps import Service, count_inputs
from ..errors import RequestInputError, check_count, encode_sequence, field_name
from ..schemas import VariantIn, VariantScore, VariantsRequest, VariantsResponse

router = APIRouter(prefix="/v1", tags=["variants"])


class SequenceGenome(Genome):
    """Sequences sent with a request, seen through the :class:`~genoseq.genome.Genome` interface."""

    def __init__(self, sequences: dict[str, np.ndarray]) -> None:
        super().__init__("<request>")
        self._ids = sequences
        self.contigs = {name: len(ids) for name, ids in sequences.items()}

    def _open(self):  # nothing to open: the ids are in memory
        return None

    def _read(self, contig: str, start: int, end: int) -> np.ndarray:
        return self._ids[contig][start:end]


def _check_variant(i: int, v: VariantIn, genome: Genome, contig: str, tokenizer, max_allele: int) -> None:
    """422 naming the field unless the variant can be scored."""
    loc = ["variants", i]
    ref = encode_sequence(tokenizer, v.ref, [*loc, "ref"], max_allele)
    encode_sequence(tokenizer, v.alt, [*loc, "alt"], max_allele)
    length = genome.contigs[contig]
    if v.pos + len(v.ref) - 1 > length:
        raise RequestInputError([*loc, "pos"], f"{field_name([*loc, 'pos'])}: REF at {v.pos}..{v.pos + len(v.ref) - 1} "
                                               f"runs past the end of the sequence (length {length})", "out_of_bounds")
    found = genome.fetch(contig, v.pos - 1, v.pos - 1 + len(v.ref))
    if not np.array_equal(found, ref):
        raise RequestInputError([*loc, "ref"], f"{field_name([*loc, 'ref'])}: REF {v.ref!r} does not match the "
                                               f"{'sequence' if v.chrom is None else 'reference'} "
                                               f"({tokenizer.decode(found)!r}) at position {v.pos}", "ref_mismatch")


@router.post("/variants", response_model=VariantsResponse, summary="Variant effect scores (log-likelihood ratios)",
             responses={422: {"description": "bad variant (field named): REF mismatch, position, contig, bases, length"}})
async def variants(body: VariantsRequest, request: Request, service: Service) -> VariantsResponse:
    """LLR = log P(alt window) - log P(ref window) over a window centred on each variant
    (``genoseq vep``'s ``VariantEffectScorer``: same window, strands and scoring)."""
    from genoseq.pipelines.vep import OK, Variant, VariantEffectScorer

    limits = service.settings.limits
    check_count(["variants"], len(body.variants), limits.max_variants, "variants")
    tokenizer = service.lm.tokenizer
    max_allele = body.window_length // 2  # the scorer's limit (longer alleles are "too_long")

    sent: dict[str, str] = {}  # one contig per distinct sequence, so shared windows are scored once
    sequences: dict[str, np.ndarray] = {}
    contigs: list[str] = []
    for i, v in enumerate(body.variants):
        if v.sequence is not None:
            name = sent.get(v.sequence)
            if name is None:
                name = sent[v.sequence] = f"#{len(sent) + 1}"
                sequences[name] = encode_sequence(tokenizer, v.sequence, ["variants", i, "sequence"],
                                                  limits.max_sequence_length)
            contigs.append(name)
        else:
            if service.reference is None:
                raise RequestInputError(["variants", i, "chrom"], f"variants[{i}].chrom: the server has no reference "
                                        "genome (started without --reference); send the 'sequence' instead", "no_reference")
            if v.chrom not in service.reference.contigs:
                known = ", ".join(list(service.reference.contigs)[:5])
                raise RequestInputError(["variants", i, "chrom"], f"variants[{i}].chrom: unknown contig {v.chrom!r} "
                                        f"(the reference has {known}{', ...' if len(service.reference.contigs) > 5 else ''})",
                                        "unknown_contig")
            contigs.append(v.chrom)
    in_request = SequenceGenome(sequences)
    count_inputs(request, len(body.variants), sum(len(ids) for ids in sequences.values()))

    def run():  # on the model thread, which also owns the reference genome's file handle
        for i, (v, contig) in enumerate(zip(body.variants, contigs)):
            _check_variant(i, v, in_request if v.chrom is None else service.reference, contig, tokenizer, max_allele)
        effects = []
        for genome, chosen in ((in_request, [i for i, v in enumerate(body.variants) if v.chrom is None]),
                               (service.reference, [i for i, v in enumerate(body.variants) if v.chrom is not None])):
            if not chosen:
                continue
            scorer = VariantEffectScorer(service.lm, genome, window_length=body.window_length, strands=body.strands,
                                         device=service.device)
            found = scorer.score([Variant(contigs[i], body.variants[i].pos, body.variants[i].ref, body.variants[i].alt)
                                  for i in chosen])
            effects.extend(zip(chosen, found))
        return [e for _, e in sorted(effects, key=lambda pair: pair[0])]

    effects = await service.run(run)
    out = []
    for i, (v, e) in enumerate(zip(body.variants, effects)):
        if e.status != OK:  # every check above passed, so the scorer should agree
            raise RequestInputError(["variants", i], f"variants[{i}]: not scored ({e.status})", e.status)
        out.append(VariantScore(chrom=v.chrom, pos=v.pos, ref=v.ref, alt=v.alt, llr=e.llr,
                                llr_forward=e.llr_forward, llr_reverse=e.llr_reverse))
    return VariantsResponse(model=service.model_name, window_length=body.window_length, strands=body.strands,
                            effects=out)
