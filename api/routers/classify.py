"""``POST /v1/classify``: labels and class probabilities from the loaded classifier, or the
predicted value of every target when the loaded model is a regression model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Request

from ..deps import request_sequences, with_classifier
from ..schemas import ClassifyRequest, ClassifyResponse, Prediction, TargetValues
from ..service import ModelService

router = APIRouter(prefix="/v1", tags=["classify"])


@router.post("/classify", response_model=ClassifyResponse,
             summary="Predicted label and probabilities (or target values) per sequence",
             responses={404: {"description": "no classifier loaded"},
                        422: {"description": "bad sequence (field and position named), too long or too many"}})
async def classify(body: ClassifyRequest, request: Request,
                   service: Annotated[ModelService, Depends(with_classifier)]) -> ClassifyResponse:
    """The same numbers as ``genoseq classify predict``: ``SequenceClassifier.predict_proba``, or
    ``predict_values`` for a regression model (``task: regression``, one value per target)."""
    clf = service.classifier
    limits = service.settings.limits
    encoded = request_sequences(request, clf.tokenizer, body.sequences, limits)
    name = Path(service.settings.classifier).name
    if clf.is_regression:
        values = await service.run(clf.predict_values, encoded, batch_size=limits.max_batch_rows)
        targets = list(clf.targets)
        return ClassifyResponse(classifier=name, task="regression", classes=[], targets=targets,
                                predictions=[TargetValues(values=dict(zip(targets, map(float, row)))) for row in values])
    proba = await service.run(clf.predict_proba, encoded, batch_size=limits.max_batch_rows)
    classes = list(clf.classes)
    predictions = [Prediction(label=classes[int(row.argmax())], probabilities=dict(zip(classes, map(float, row))))
                   for row in proba]
    return ClassifyResponse(classifier=name, classes=classes, predictions=predictions)
