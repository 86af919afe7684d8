"""The genoseq REST API: ``create_app(model=...)`` builds a FastAPI app; ``genoseq serve`` runs it.

One router per job (``routers/``), pydantic schemas (``schemas.py``), the models loaded once per
app and injected into routes as dependencies (``service.py``, ``deps.py``).

``genoseq serve`` (``serve.py``) is here, not among the jobs: it runs this layer. Importing the
package is cheap (no FastAPI until ``create_app`` or a router is used), so the CLI can build
the ``serve`` command's parser quickly.
"""

from __future__ import annotations

import importlib

_EXPORTS = {"create_app": "app", "ApiSettings": "settings", "Limits": "settings"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
