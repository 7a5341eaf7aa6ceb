"""``xas serve``: a REST API and a web page for predicting spectra of structures and
descriptors of measured spectra (the ``serve`` extra: fastapi, uvicorn, python-multipart).

:func:`run_server` starts uvicorn; :func:`xas_models.serve.app.create_app` builds the
application (for tests and other ASGI servers). The page (``static/``) is plain HTML and
JavaScript with a bundled Plotly.js (MIT, ``static/plotly.LICENSE.txt``): no build step and no
network access at run time.
"""

from __future__ import annotations

import dataclasses
import json
import os

from xas_models.errors import ModelError
from xas_models.serve.service import ServeSettings

__all__ = ["ServeSettings", "run_server"]


def _require_extra() -> None:
    try:
        import fastapi  # noqa: F401
        import multipart  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise ModelError(
            f"'xas serve' needs {exc.name}; install it with: pip install 'xas-models[serve]'"
        ) from None


def run_server(
    settings: ServeSettings, host: str = "127.0.0.1", port: int = 8000, workers: int = 1
) -> None:
    """Serve until interrupted; ``workers`` > 1 runs that many processes behind one port,
    each loading the models once."""
    _require_extra()
    import uvicorn

    from xas_models.serve.app import SETTINGS_ENV

    if workers < 1:
        raise ModelError(f"--workers {workers}: give 1 or more")
    os.environ[SETTINGS_ENV] = json.dumps(dataclasses.asdict(settings))
    uvicorn.run(
        "xas_models.serve.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
    )
