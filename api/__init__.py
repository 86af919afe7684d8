"""The genoseq REST API: ``create_app(model=...)`` builds a FastAPI app; ``genoseq serve`` runs it.

One router per job (``routers/``), pydantic schemas (``schemas.py``), the models loaded once per
app and injected into routes as dependencies (``service.py``, ``deps.py``).

``genoseq serve`` (``serve.py``) is here, not among the jobs: it runs this layer. Importing the
package is cheap (no FastAPI until ``create_app`` or a router is used), so the CLI can build
the ``serve`` command's parser quickly.
"""

from __future__ import annotations

from genoseq._lazy import lazy_getattr

_EXPORTS = {"create_app": "app", "ApiSettings": "settings", "Limits": "settings"}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS, globals())
