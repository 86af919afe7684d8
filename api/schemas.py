"""Request and response bodies of the genoseq REST API (pydantic v2).

Sequences are strings of A C G T and IUPAC codes (any case; ambiguity codes are read as N), as
everywhere in genoseq. Limits that depend on the server's configuration (sequence length,
sequences per request) are checked by the routes and reported with the field that broke them.
"""

from __future__ import annotations

from itertools import combinations
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# The pattern documents the alphabet in the OpenAPI schema; the tokenizer does the checking, so a
# bad character is reported with its position (a pattern error could not say where it is).
DNA_PATTERN = "^[ACGTNRYSWKMBDHVacgtnryswkmbdhv]+$"
Sequence = Annotated[str, Field(min_length=1, description="DNA: A C G T and IUPAC codes (as N), any case",
                                json_schema_extra={"pattern": DNA_PATTERN})]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]


def _one_per_sequence(request: BaseModel, *fields: str) -> None:
    """Optional per-sequence lists (names, qualities) must have one entry per sequence."""
    n = len(request.sequences)
    for field in fields:
        values = getattr(request, field)
        if values is not None and len(values) != n:
            raise ValueError(f"{field} has {len(values)} entries for {n} sequences")

class _Request(BaseModel):
    # a misspelt option is an error, not ignored; `false` is not a layer number, nor "3" a count
    model_config = ConfigDict(extra="forbid", strict=True)


# ---------------------------------------------------------------------- health and models
class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["loading", "ready", "failed"]
    error: str | None = None
    load_seconds: float | None = None


class LoadedModel(BaseModel):
    name: str = Field(description="folder name of the model")
    model_type: str
    parameters: int
    config: dict
    conditions: list[str] = Field(default_factory=list, description="condition labels (conditional models)")
    classes: list[str] | None = None


class Reference(BaseModel):
    name: str
    contigs: int
    bases: int


class Contig(BaseModel):
    name: str
    length: int


class IndexInfo(BaseModel):
    """The read index behind ``/v1/align`` (``genoseq align index``)."""

    name: str = Field(description="folder name of the index")
    index_type: str = Field(description="faiss index: flat, hnsw or ivfpq")
    fragments: int = Field(description="reference fragments (each stored on both strands)")
    entries: int = Field(description="vectors in the index (2 per fragment)")
    fragment_length: int
    overlap: int
    contigs: list[Contig] = Field(description="the reference the index was built from")
    encoder: LoadedModel
    mapping: dict = Field(description="default mapping options of /v1/align (those of `genoseq align map`)")


class ModelsInfo(BaseModel):
    device: str
    model: LoadedModel
    classifier: LoadedModel | None = None
    generator: LoadedModel | None = None
    reference: Reference | None = None
    index: IndexInfo | None = None
    scoring: dict = Field(description="chunk_size and context used for long sequences, as `genoseq score`; "
                                      "`batches`: forward passes of stacked rows, `batched_rows`: their rows")
    batching: dict = Field(default_factory=dict,
                           description="dynamic batching of /v1/score and /v1/embed: its settings, and per route "
                                       "the batches gathered, their sequences and tokens, refusals (503) and queue")
    limits: dict


# ---------------------------------------------------------------------- score
class ScoreRequest(_Request):
    sequences: list[Sequence] = Field(min_length=1, description="sequences to score")
    names: list[str] | None = Field(None, description="optional names, one per sequence (default #1, #2, ...)")
    token_log_probs: bool = Field(False, description="also return log P(x_t | x_<t) per position")

    @model_validator(mode="after")
    def _names_match(self) -> "ScoreRequest":
        _one_per_sequence(self, "names")
        return self


class SequenceScore(BaseModel):
    name: str
    length: int
    scored_bases: int = Field(description="positions 2..L whose base is A, C, G or T (1..L for a masked model)")
    log_likelihood: float = Field(description="sum of log P(x_t | x_<t) over scored bases, nats; for a masked "
                                  "model (likelihood 'pseudo') the pseudo-log-likelihood, sum of log P(x_t | the rest)")
    bits_per_base: float | None = Field(description="-log_likelihood / scored_bases / ln 2 (null if none scored)")
    token_log_probs: list[float | None] | None = Field(
        None, description="per position (index 0 = position 1): log P in nats, null where not scored")


class ScoreResponse(BaseModel):
    model: str
    likelihood: Literal["causal", "pseudo"] = Field(
        "causal", description="causal: log P(x_t | x_<t); pseudo: a bidirectional (masked) model's "
        "pseudo-log-likelihood, every base masked once (comparable between sequences of one model only)")
    scores: list[SequenceScore]


# ---------------------------------------------------------------------- embed
# The poolings of genoseq.models.embedding (echo, or a '+' combination of the others), written in
# one order so the schema can list them; tests hold this list to what pooling_parts accepts.
POOLING_CHOICES: tuple[str, ...] = ("echo",) + tuple(
    "+".join(parts) for r in range(1, 5) for parts in combinations(("mean", "last", "phase", "ends"), r))
PoolingChoice = Literal[POOLING_CHOICES]  # type: ignore[valid-type]
class EmbedRequest(_Request):
    sequences: list[Sequence] = Field(min_length=1)
    layer: int | None = Field(-1, description="-1 after the last block, k after k blocks (0 = embeddings), "
                                              "negative from the top, null for the final normed output")
    pooling: PoolingChoice = Field("mean", description="mean, last, echo, phase, ends, or a '+' combination of "
                                                     "mean, last, phase and ends in that order (e.g. phase+ends)")
    rc_average: bool = Field(False, description="average with the reverse complement's vector")
    rc_concat: bool = Field(False, description="concatenate with the reverse complement's vector (twice the width)")

    @model_validator(mode="after")
    def _one_strand_rule(self) -> "EmbedRequest":
        if self.rc_average and self.rc_concat:
            raise ValueError("rc_average and rc_concat exclude each other")
        return self


class EmbedResponse(BaseModel):
    model: str
    dim: int
    layer: int | None
    pooling: str
    rc_average: bool
    rc_concat: bool
    embeddings: list[list[float]]


# ---------------------------------------------------------------------- variants
Allele = Annotated[str, Field(min_length=1, max_length=100_000)]


class VariantIn(_Request):
    """One REF/ALT pair at a 1-based position of ``sequence`` or of the reference contig ``chrom``."""

    pos: int = Field(ge=1, description="1-based position of the first REF base")
    ref: Allele
    alt: Allele
    sequence: Sequence | None = Field(None, description="the sequence the variant is in (instead of chrom)")
    chrom: str | None = Field(None, min_length=1, description="a contig of the server's reference genome")

    @model_validator(mode="after")
    def _one_source(self) -> "VariantIn":
        if (self.sequence is None) == (self.chrom is None):
            raise ValueError("give exactly one of 'sequence' and 'chrom'")
        return self


class VariantsRequest(_Request):
    variants: list[VariantIn] = Field(min_length=1)
    window_length: int = Field(256, ge=4, le=100_000, description="bases in the window centred on each variant")
    strands: Literal["both", "forward"] = "both"


class VariantScore(BaseModel):
    chrom: str | None
    pos: int
    ref: str
    alt: str
    llr: float = Field(description="log P(alt window) - log P(ref window), nats (negative: less likely); a masked "
                       "model's masked marginal (see the response's score)")
    llr_forward: float
    llr_reverse: float | None


class VariantsResponse(BaseModel):
    model: str
    window_length: int
    strands: str
    score: str = Field("", description="what an llr is: a log-likelihood ratio of the windows (causal model) or "
                       "a masked marginal (bidirectional model)")
    effects: list[VariantScore]


# ---------------------------------------------------------------------- classify
class ClassifyRequest(_Request):
    sequences: list[Sequence] = Field(min_length=1)


class Prediction(BaseModel):
    label: str
    probabilities: dict[str, float]


class TargetValues(BaseModel):
    values: dict[str, float] = Field(description="predicted value per target (a regression model)")


class ClassifyResponse(BaseModel):
    classifier: str
    task: Literal["classification", "regression"] = "classification"
    classes: list[str] = Field(description="class labels (empty for a regression model)")
    targets: list[str] = Field(default_factory=list, description="regression targets (empty for a classifier)")
    predictions: list[Prediction | TargetValues]


# ---------------------------------------------------------------------- generate
Motif = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[ACGTacgt]+$")]


class GenerateRequest(_Request):
    condition: str | None = Field(None, description="condition label of a conditionally fine-tuned model")
    prompt: str = Field("", max_length=10_000, description="bases to continue")
    num_samples: int = Field(1, ge=1)
    max_new_tokens: int = Field(200, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=100.0)
    top_k: int | None = Field(None, ge=1)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    seed: int = Field(0, ge=0, lt=2**63)
    gc_min: Probability | None = None
    gc_max: Probability | None = None
    forbid: list[Motif] = Field(default_factory=list, max_length=64, description="motifs banned on both strands")
    max_homopolymer: int | None = Field(None, ge=1)
    max_attempts: int | None = Field(None, ge=1, le=100_000)
    oracle: bool = Field(False, description="score designs with the server's classifier")
    oracle_class: str | None = None
    select: Literal["all", "top-k"] = "all"
    oversample: int = Field(4, ge=1, le=64)
    refine_rounds: int = Field(0, ge=0, le=100)
    refine_span: int = Field(10, ge=1)

    @model_validator(mode="after")
    def _gc_range(self) -> "GenerateRequest":
        if self.gc_min is not None and self.gc_max is not None and self.gc_min > self.gc_max:
            raise ValueError(f"gc_min ({self.gc_min}) is above gc_max ({self.gc_max})")
        return self


class Design(BaseModel):
    sequence: str
    gc: float
    oracle_p: float | None = None


class GenerateResponse(BaseModel):
    generator: str
    designs: list[Design]
    attempts: int
    rejected: int
    rejected_by_reason: dict[str, int]
    shortfall: int
    refinement_improved: list[int]


# ---------------------------------------------------------------------- align
# SAM's QNAME alphabet and length; qualities are Phred+33 characters, as in FASTQ
ReadName = Annotated[str, Field(pattern=r"^[!-?A-~]{1,254}$", description="SAM QNAME: printable, no spaces or '@'")]
Quality = Annotated[str, Field(min_length=1, pattern=r"^[!-~]+$", description="Phred+33, one character per base")]


class AlignRequest(_Request):
    sequences: list[Sequence] = Field(min_length=1, description="reads to map")
    names: list[ReadName] | None = Field(None, description="optional read names, one per read (default #1, #2, ...)")
    qualities: list[Quality] | None = Field(None, description="optional base qualities, one string per read")
    top_k: int | None = Field(None, ge=1, le=1024, description="index entries retrieved per read "
                                                               "(null: genoseq align map's default)")
    rescue_k: int | None = Field(None, ge=0, le=1024, description="reads unaligned within top_k are searched again "
                                                                  "this deep; 0: never (null: genoseq align map's default)")
    flank: int | None = Field(None, ge=0, le=100_000, description="bases added on each side of a retrieved "
                                                                  "fragment (null: half the fragment length)")
    max_error_rate: float | None = Field(None, ge=0.0, lt=1.0, description="reads with more edits than this "
                                                                           "fraction of their length are unmapped")
    extended_cigar: bool | None = Field(None, description="=/X in CIGARs (false: M)")
    sam: bool = Field(False, description="also return each read's SAM line and the SAM header")

    @model_validator(mode="after")
    def _counts_match(self) -> "AlignRequest":
        _one_per_sequence(self, "names", "qualities")
        return self


class ReadAlignment(BaseModel):
    name: str
    mapped: bool
    flag: int = Field(description="SAM flag: 0 forward, 16 reverse strand, 4 unmapped")
    contig: str | None = Field(description="reference contig (null when unmapped)")
    pos: int | None = Field(description="1-based leftmost aligned reference base (SAM POS)")
    strand: Literal["+", "-"] | None
    cigar: str | None = Field(description="soft clips, =/X (or M), I, D")
    mapq: int
    edit_distance: int | None = Field(description="mismatches and indel bases in the CIGAR (NM)")
    alignment_score: int | None = Field(description="minus the read's best edit distance (AS)")
    second_best_score: int | None = Field(description="minus the edit distance at the best other locus (XS); "
                                                      "null when there is none")
    sam: str | None = Field(None, description="the SAM line `genoseq align map` writes for the read")


class AlignResponse(BaseModel):
    index: str
    top_k: int
    rescue_k: int
    flank: int
    max_error_rate: float
    extended_cigar: bool
    alignments: list[ReadAlignment]
    sam_header: str | None = Field(None, description="@HD, @SQ and @PG lines (with sam=true)")


# ---------------------------------------------------------------------- annotate
class AnnotateRequest(_Request):
    sequences: list[Sequence] = Field(min_length=1, description="sequences to annotate (both strands)")
    names: list[str] | None = Field(None, description="one name per sequence (default #1, #2, ...)")
    min_gene_length: int = Field(90, ge=3, description="shortest gene called, in bases (stop codon included)")
    probabilities: bool = Field(False, description="also return per-base probabilities of each class per strand")

    @model_validator(mode="after")
    def _counts_match(self) -> "AnnotateRequest":
        _one_per_sequence(self, "names")
        return self


class AnnotatedFeature(BaseModel):
    type: str = Field(description="CDS, tRNA, rRNA, other_RNA or a mapped class")
    start: int = Field(description="0-based start")
    end: int = Field(description="0-based end, exclusive")
    strand: Literal["+", "-"]
    score: float = Field(description="mean probability of the class over the feature")
    partial: bool = Field(False, description="runs off the sequence without a start or stop codon")


class SequenceAnnotation(BaseModel):
    name: str
    length: int
    features: list[AnnotatedFeature]
    probabilities: dict[str, dict[str, list[float]]] | None = Field(
        None, description="strand (+, -) -> class -> one probability per base")


class AnnotateResponse(BaseModel):
    segmenter: str
    classes: list[str]
    annotations: list[SequenceAnnotation]


# ---------------------------------------------------------------------- interpret
class InterpretRequest(_Request):
    method: Literal["ism", "dependencies", "attributions"] = Field(
        description="ism: the language model's LLR of every substitution; dependencies: its L x L nucleotide "
                    "dependency map; attributions: the loaded classifier's per-base contributions")
    sequences: list[Sequence] = Field(min_length=1)
    names: list[str] | None = Field(None, description="one name per sequence (default #1, #2, ...)")
    radius: int | None = Field(128, ge=0, description="ism: bases after a substitution whose change is summed "
                                                      "(null: to the end of the sequence)")
    strands: Literal["both", "forward"] = "both"
    class_name: str | None = Field(None, description="attributions: the class explained (default: the predicted one)")
    attribution_method: Literal["ig", "deepliftshap", "ism"] = Field("ig", description="attributions: the method")
    n_shuffles: int = Field(10, ge=1, le=50, description="attributions: dinucleotide-shuffled references")
    n_steps: int = Field(20, ge=1, le=100, description="attributions (ig): integration steps per reference")

    @model_validator(mode="after")
    def _counts_match(self) -> "InterpretRequest":
        _one_per_sequence(self, "names")
        return self


class Interpretation(BaseModel):
    name: str
    length: int
    llr: list[list[float | None]] | None = Field(
        None, description="ism: (L x 4) LLR in nats of A, C, G, T at each position (0 at the reference base, "
                          "null at an N)")
    importance: list[float | None] | None = Field(None, description="ism: mean |LLR| of each base's substitutions")
    dependencies: list[list[float | None]] | None = Field(
        None, description="dependencies: (L x L) largest change of log-odds at j when base i is substituted")
    contributions: list[list[float]] | None = Field(
        None, description="attributions: (L x 4) contribution of each base present (0 for the others)")
    target: str | None = Field(None, description="attributions: the class explained")
    probabilities: dict[str, float] | None = Field(None, description="attributions: class probabilities")


class InterpretResponse(BaseModel):
    model: str = Field(description="the language model or classifier that answered")
    method: str
    results: list[Interpretation]
