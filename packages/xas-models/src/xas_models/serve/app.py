"""The FastAPI application of ``xas serve``: a REST API (OpenAPI docs at ``/docs``) and one
static page (``/``) that uses only that API.

Endpoints: ``GET /health``, ``GET /models``, ``GET /models/{name}``, ``POST /predict``
(structure -> spectra, JSON or CSV), ``POST /describe`` (measured spectrum -> normalised curve
and descriptors). Every user mistake is answered with a 4xx status and ``{"detail": "<one
line>"}``. The model endpoints are plain functions, run in FastAPI's thread pool, so a long
prediction never blocks ``/health``.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from xas_data.errors import XASDataError
from xas_models import __version__
from xas_models.serve.service import ModelService, ServeSettings, parse_structure, upload_text

#: environment variable carrying the settings (JSON) to each ``--workers`` process
SETTINGS_ENV = "XAS_SERVE_SETTINGS"
STATIC = resources.files("xas_models.serve") / "static"
#: reads ``Authorization: Bearer <token>`` (checked only when the server has a token)
_BEARER = HTTPBearer(auto_error=False)
EXAMPLE_CURL = {
    "predict": "curl -F file=@docs/examples/CuO.cif http://127.0.0.1:8000/predict",
    "predict_csv": "curl -F file=@CuO.cif 'http://127.0.0.1:8000/predict?output=csv' -o CuO.csv",
    "describe": "curl -F file=@cu_foil.txt -F element=Cu http://127.0.0.1:8000/describe",
    "models": "curl http://127.0.0.1:8000/models",
}


class Health(BaseModel):
    """``GET /health``: the server answers; which models are in memory."""

    status: str = Field(examples=["ok"])
    version: str
    ready: bool = Field(description="the default models are loaded and warmed up")
    models_loaded: list[str]


class ModelsAnswer(BaseModel):
    """``GET /models``: the served zoo models and the defaults the page preselects."""

    models: list[dict[str, Any]]
    default_forward: str | None
    default_inverse: str | None


class PredictAnswer(BaseModel):
    """``POST /predict``: one prediction per absorbing element and model."""

    source: str
    formula: str
    n_atoms: int
    predictions: list[dict[str, Any]] = Field(
        description="StructurePrediction.to_dict() (energy_eV, sites[].mu, average_mu, "
        "sigma for ensembles) plus e0_ev / white_line_ev / white_line_mu per site and under "
        "'average'"
    )
    notes: list[str]


class DescribeAnswer(BaseModel):
    """``POST /describe``: one entry per measured spectrum in the upload."""

    spectra: list[dict[str, Any]] = Field(
        description="name, element, model, e0_ev, energy_eV, mu_norm (normalised on the "
        "model's grid), notes, descriptors {name: {kind, value, std, probabilities, "
        "in_domain, warnings}}"
    )


def _one_line(exc: RequestValidationError) -> str:
    """The first validation error as one line: ``body.element: Field required``."""
    errs = exc.errors()
    if not errs:
        return "invalid request"
    first = errs[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    return f"invalid request: {where}: {first.get('msg', 'invalid')}"


def _read_upload(upload: UploadFile | None, text: str | None, limit: int) -> tuple[str, str]:
    """``(name, text)`` of the uploaded file or the pasted text (at most ``limit`` bytes)."""
    if upload is not None and upload.filename:
        data = upload.file.read(limit + 1)
        return Path(upload.filename).name or "upload", upload_text(data, upload.filename, limit)
    if text:
        return "pasted text", upload_text(text.encode("utf-8"), "pasted text", limit)
    raise XASDataError("no input: upload a file (field 'file') or paste it (field 'text')")


def _csv_bytes(predictions: list[Any]) -> bytes:
    """The predictions as :func:`xas_models.predict.write_csv` writes them."""
    from xas_models.predict import write_csv

    with tempfile.TemporaryDirectory(prefix="xas-serve-") as tmp:
        return write_csv(predictions, Path(tmp) / "predictions.csv").read_bytes()


def settings_from_env() -> ServeSettings:
    """The settings ``xas serve`` left in :data:`SETTINGS_ENV` (defaults when unset)."""
    raw = os.environ.get(SETTINGS_ENV)
    return ServeSettings(**json.loads(raw)) if raw else ServeSettings()


def create_app(settings: ServeSettings | None = None, warm_up: bool = True) -> FastAPI:
    """The application. ``warm_up`` loads the default models in a background thread at
    start-up (``/health`` says ``ready`` once done)."""
    settings = settings or settings_from_env()
    service = ModelService(settings)
    state = {"ready": not warm_up, "warm_up_error": None}

    def _warm() -> None:
        try:
            service.warm_up()
        except Exception as exc:  # reported by /health; requests then load on demand
            state["warm_up_error"] = str(exc)
        state["ready"] = True

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        if warm_up:
            threading.Thread(target=_warm, name="xas-serve-warm-up", daemon=True).start()
        yield

    def authorised(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]):
        if settings.token and (creds is None or creds.credentials != settings.token):
            raise HTTPException(
                401, "missing or wrong bearer token: send 'Authorization: Bearer <token>'"
            )

    app = FastAPI(
        title="xas serve",
        version=__version__,
        description="Predict K-edge XANES of structures and local-structure descriptors of "
        "measured spectra with the xas-models zoo.\n\nExamples:\n\n"
        + "\n".join(f"    {c}" for c in EXAMPLE_CURL.values()),
        lifespan=lifespan,
    )
    api = [Depends(authorised)]

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > settings.max_upload_bytes + 65536:
            return JSONResponse(
                {
                    "detail": f"request of {length} bytes exceeds the limit of "
                    f"{settings.max_upload_bytes} bytes; upload a smaller file"
                },
                status_code=413,
            )
        return await call_next(request)

    @app.exception_handler(XASDataError)
    async def user_error(_: Request, exc: XASDataError):
        return JSONResponse({"detail": " ".join(str(exc).split())}, status_code=422)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, exc: RequestValidationError):
        return JSONResponse({"detail": _one_line(exc)}, status_code=422)

    @app.get("/health", response_model=Health)
    async def health() -> Health:
        """Liveness: answers at once, even during a long prediction."""
        return Health(
            status="ok"
            if state["warm_up_error"] is None
            else f"warm-up failed: {state['warm_up_error']}",
            version=__version__,
            ready=bool(state["ready"]),
            models_loaded=service.loaded_names(),
        )

    @app.get("/models", response_model=ModelsAnswer, dependencies=api)
    def models() -> ModelsAnswer:
        """The served zoo models (every version) with their headline metric and licence."""
        from xas_models.serve.service import entry_json

        entries = service.entries()
        tasks = {e.task for e in entries}
        return ModelsAnswer(
            models=[entry_json(e) for e in entries],
            default_forward=service.default_model("forward") if "forward" in tasks else None,
            default_inverse=service.default_model("inverse") if "inverse" in tasks else None,
        )

    @app.get("/models/{name}", dependencies=api)
    def model(name: str, version: str = "latest") -> dict[str, Any]:
        """One model: its zoo entry and its model card (Markdown)."""
        from xas_models.serve.service import entry_json

        try:
            entry = service.entry(name, version)
        except XASDataError as exc:
            raise HTTPException(404, str(exc)) from None
        return entry_json(entry) | {"card": service.model_card(name, version)}

    @app.post("/predict", response_model=PredictAnswer, dependencies=api)
    def predict(
        file: Annotated[UploadFile | None, File(description="CIF, POSCAR or XYZ file")] = None,
        text: Annotated[str | None, Form(description="pasted CIF/POSCAR/XYZ text")] = None,
        format: Annotated[
            str | None, Form(description="cif, poscar or xyz (default: guess)")
        ] = None,
        model: Annotated[list[str] | None, Form(description="forward model(s)")] = None,
        output: str = "json",
    ) -> Any:
        """Spectra of every absorbing element the chosen models predict, per inequivalent
        site and averaged. ``?output=csv`` answers the CSV of ``xas predict --out``."""
        if output not in ("json", "csv"):
            raise XASDataError(f"output {output!r} is unknown; use json or csv")
        name, body = _read_upload(file, text, settings.max_upload_bytes)
        structure = parse_structure(body, name, settings.max_atoms, format)
        chosen = model or [service.default_model("forward")]
        predictions, notes = service.predict_structure(structure, name, chosen)
        if output == "csv":
            stem = Path(name).stem.replace(" ", "_") or "structure"
            return Response(
                _csv_bytes(predictions),
                media_type="text/csv",
                headers={"Content-Disposition": f'attachment; filename="{stem}-xas.csv"'},
            )
        from xas_models.serve.service import prediction_json

        return PredictAnswer(
            source=name,
            formula=structure.composition.reduced_formula,
            n_atoms=len(structure),
            predictions=[prediction_json(p) for p in predictions],
            notes=notes,
        )

    @app.post("/describe", response_model=DescribeAnswer, dependencies=api)
    def describe(
        file: Annotated[
            UploadFile | None,
            File(description="XDI, XAS Data Library JSON or two columns (eV, mu)"),
        ] = None,
        text: Annotated[str | None, Form(description="pasted spectrum text")] = None,
        element: Annotated[
            str | None, Form(description="absorber (needed for two columns)")
        ] = None,
        model: Annotated[str | None, Form(description="inverse model")] = None,
    ) -> DescribeAnswer:
        """Normalise a measured K-edge spectrum and predict its descriptors (OS, CN, ...)
        with probabilities (classification) or spreads (regression)."""
        from xas_models.predict import _element_symbol

        name, body = _read_upload(file, text, settings.max_upload_bytes)
        el = _element_symbol(element.strip()) if element and element.strip() else None
        spectra = service.read_spectra(body, name, el)
        chosen = model or service.default_model("inverse")
        return DescribeAnswer(spectra=[service.describe(s, chosen) for s in spectra])

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(str(STATIC / "index.html"))

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` (each ``--workers`` process builds its own app)."""
    return create_app(settings_from_env())
