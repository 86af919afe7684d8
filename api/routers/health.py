"""``/healthz`` (the process answers), ``/readyz`` (models loaded) and ``/v1/models`` (what is loaded)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from ..deps import Service, get_service
from ..schemas import Contig, Health, IndexInfo, LoadedModel, ModelsInfo, Readiness, Reference
from ..service import ModelService

router = APIRouter(tags=["health"])
models_router = APIRouter(prefix="/v1", tags=["models"])


@router.get("/healthz", response_model=Health, summary="The server process is up")
async def healthz() -> Health:
    return Health()


@router.get("/readyz", response_model=Readiness, summary="The models are loaded (503 while loading or after a failure)",
            responses={503: {"model": Readiness}})
async def readyz(service: Annotated[ModelService, Depends(get_service)]):
    body = Readiness(status=service.status, error=service.error, load_seconds=service.load_seconds)
    return JSONResponse(body.model_dump(), status_code=200 if service.status == "ready" else 503)


def _describe(path: str, module, model_type: str, config: dict, **extra) -> LoadedModel:
    return LoadedModel(name=Path(path).name, model_type=model_type,
                       parameters=sum(p.numel() for p in module.parameters()), config=config, **extra)


@models_router.get("/models", response_model=ModelsInfo, summary="The loaded models, their configs and the limits")
async def models(service: Service) -> ModelsInfo:
    from genoseq.models.inference import scoring_window

    s = service.settings
    lm = service.lm
    chunk_size, context = scoring_window(lm, s.chunk_size, s.context)
    info = ModelsInfo(
        device=str(service.device),
        model=_describe(s.model, lm, "GenoSeqLM", lm.config.to_dict(), conditions=list(lm.tokenizer.condition_labels)),
        scoring={"chunk_size": chunk_size, "context": context, "recurrent": lm.is_recurrent,
                 "batches": service.forward_passes, "batched_rows": service.forward_rows},
        batching={"batch_wait_ms": s.batch_wait_ms, "max_batch_tokens": s.max_batch_tokens, "max_queue": s.max_queue,
                  "score": service.scoring.stats.to_dict() | {"queued": service.scoring.queued},
                  "embed": service.embedding.stats.to_dict() | {"queued": service.embedding.queued}},
        limits=s.limits.__dict__.copy(),
    )
    if service.classifier is not None:
        clf = service.classifier
        info.classifier = _describe(s.classifier, clf, "GenoSeqClassifier",
                                    {**clf.classifier_config(), "model": clf.lm.config.to_dict()}, classes=list(clf.classes))
    if service.generator is not None:
        gen = service.generator
        info.generator = LoadedModel(name=Path(gen.path).name, model_type="GenoSeqLM", parameters=gen.parameters,
                                     config=gen.config, conditions=gen.conditions)
    if service.reference is not None:
        ref = service.reference
        info.reference = Reference(name=Path(s.reference).name, contigs=len(ref.contigs), bases=sum(ref.contigs.values()))
    if service.aligner is not None:
        aligner = service.aligner
        manifest, encoder = aligner.index.manifest, aligner.index.encoder
        info.index = IndexInfo(
            name=Path(s.index).name, index_type=manifest["index_type"], fragments=manifest["n_fragments"],
            entries=manifest["n_entries"], fragment_length=manifest["fragment_length"], overlap=manifest["overlap"],
            contigs=[Contig(name=c["name"], length=c["length"]) for c in manifest["contigs"]],
            encoder=_describe(manifest["model_source"], encoder, "GenoSeqReadEncoder",
                              {"model": encoder.config and encoder.config.to_dict(), "encoder": encoder.encoder_config.to_dict()}),
            mapping={"top_k": aligner.top_k, "rescue_k": aligner.rescue_k, "flank": aligner.flank, "max_error_rate": aligner.max_error_rate,
                     "extended_cigar": aligner.extended_cigar, "batch_size": aligner.batch_size})
    return info
