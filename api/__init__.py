"""The genoseq REST API: ``create_app(model=...)`` builds a FastAPI app; ``genoseq serve`` runs it.

One router per job (``routers/``), pydantic schemas (``schemas.py``), the models loaded once per
app and injected into routes as dependencies (``service.py``, ``deps.py``).
"""

from .app import create_app
from .settings import ApiSettings, Limits

__all__ = ["ApiSettings", "Limits", "create_app"]
