"""The published OpenAPI 3 document (``/openapi.json``, also ``/docs.json``) and its page
(``/docs``).

BentoML generates the document of a service (``Service.openapi_spec``: its probes and
``@bentoml.api`` methods) but describes mounted ASGI apps only when they are FastAPI.
Our routes are a Starlette app, so their operations are declared here and merged into
BentoML's document; the JSON schemas come from the pydantic models the handlers return.
``/docs`` is a Swagger UI page on BentoML's bundled assets (``/static_content``) instead of
BentoML's index, which loads Google Tag Manager: an air-gapped appliance must not make
browsers call out. ``/`` is the web console (:mod:`service.http.console`): its pages,
pictures and forms are for browsers, not API clients, so the document leaves them out.
"""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from service.http.models import JobView, Problem, UploadResponse
from service.http.problems import PROBLEM_JSON, PROBLEM_TYPES

DOCS_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>MinIVess appliance API</title>
<link rel="stylesheet" href="./static_content/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="./static_content/swagger-ui-bundle.js"></script>
<script>window.ui = SwaggerUIBundle({url: "./openapi.json", dom_id: "#swagger-ui"});</script>
</body></html>
"""

DESCRIPTION = """HTTP API of the MinIVess vessel-segmentation appliance (BentoML sidecar).
Uploads join the same spool, journal and jobs as the DICOM gateway. Errors are RFC 9457
problem details. `/v1` and `/dicomweb` need `Authorization: Bearer <token>` (except in
dev mode); probes, metrics and this document are open."""

TAG = "MinIVess"
BEARER: list[dict[str, list[str]]] = [{"bearerAuth": []}]
RELATED = 'multipart/related; type="application/dicom"'


def _ref(model: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model}"}


def _json(model: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _problems(*codes: int) -> dict[str, Any]:
    meaning = {
        400: "malformed request",
        401: "no or wrong bearer token",
        403: "API locked (no token configured)",
        404: "unknown job",
        406: "Accept not satisfiable",
        409: "no results (yet)",
        410: "result files removed",
        415: "wrong media type",
        422: "nothing stored",
        503: "not ready / out of resources",
    }
    return {
        str(code): {
            "description": meaning[code],
            "content": {PROBLEM_JSON: {"schema": _ref("Problem")}},
        }
        for code in codes
    }


def _op(summary: str, responses: dict[str, Any], secured: bool = True, **extra: Any) -> Any:
    operation = {"summary": summary, "tags": [TAG], "responses": responses, **extra}
    if secured:
        operation["security"] = BEARER
    return operation


JOB_ID = [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}]
STUDY = [
    {
        "name": "study",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)*$"},
    }
]
_STOW_BODY = {
    "required": True,
    "content": {RELATED: {"schema": {"type": "string", "format": "binary"}}},
}
_STOW_RESPONSES = {
    **{
        str(code): {
            "description": text,
            "content": {
                "application/dicom+json": {
                    "schema": {
                        "type": "object",
                        "description": "Store Instances Response Module (PS3.18 Table I.1-1)",
                    }
                }
            },
        }
        for code, text in (
            (200, "all stored"),
            (202, "some stored, some failed"),
            (409, "none stored"),
        )
    },
    **_problems(400, 401, 403, 406, 415, 503),
}
_STOW = _op(
    "DICOMweb STOW-RS: store instances (PS3.18 10.5)", _STOW_RESPONSES, requestBody=_STOW_BODY
)

PATHS: dict[str, Any] = {
    "/v1/studies": {
        "post": _op(
            "Upload a study: DICOM files or a zip (multipart/form-data) or one application/zip",
            {
                "202": _json("UploadResponse", "stored; one job per study"),
                **_problems(400, 401, 403, 415, 422, 503),
            },
            requestBody={
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "files": {
                                    "type": "array",
                                    "items": {"type": "string", "format": "binary"},
                                }
                            },
                        }
                    },
                    "application/zip": {"schema": {"type": "string", "format": "binary"}},
                },
            },
        )
    },
    "/v1/jobs/{job_id}": {
        "get": _op(
            "A job: state, times, error, result names (no patient data)",
            {"200": _json("JobView", "the job"), **_problems(401, 403, 404)},
            parameters=JOB_ID,
        )
    },
    "/v1/jobs/{job_id}/result": {
        "get": _op(
            "The results: zip (default) or multipart/related DICOM parts (by Accept)",
            {
                "200": {
                    "description": "SEG, uncertainty map, SR (zip: and report.json)",
                    "content": {
                        "application/zip": {"schema": {"type": "string", "format": "binary"}},
                        RELATED: {"schema": {"type": "string", "format": "binary"}},
                    },
                },
                **_problems(401, 403, 404, 406, 409, 410),
            },
            parameters=JOB_ID,
        )
    },
    "/dicomweb/studies": {"post": _STOW},
    "/dicomweb/studies/{study}": {"post": {**_STOW, "parameters": STUDY}},
    "/readyz": {
        "get": _op(
            "Ready: models verified, gateway listening, spool has room",
            {"200": {"description": "ready"}, **_problems(503)},
            secured=False,
        )
    },
    "/metrics": {
        "get": _op(
            "Prometheus metrics of the appliance",
            {"200": {"description": "text exposition format"}},
            secured=False,
        )
    },
    "/openapi.json": {
        "get": _op("This document", {"200": {"description": "OpenAPI 3"}}, secured=False)
    },
}


def _schemas() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for model in (UploadResponse, JobView, Problem):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return schemas


def build_spec(bentoml_spec: dict[str, Any], version: str) -> dict[str, Any]:
    """BentoML's document with our operations, schemas and security scheme merged in."""
    spec = dict(bentoml_spec)
    # pydantic writes JSON Schema 2020-12 (e.g. "type": "null"): OpenAPI 3.1's dialect.
    # BentoML's own parts (plain types, no "nullable") are valid 3.1 as they are.
    spec["openapi"] = "3.1.0"
    spec["info"] = {"title": "MinIVess appliance", "version": version, "description": DESCRIPTION}
    spec["paths"] = {**spec.get("paths", {}), **PATHS}
    components = dict(spec.get("components") or {})
    components["schemas"] = {**(components.get("schemas") or {}), **_schemas()}
    components["securitySchemes"] = {"bearerAuth": {"type": "http", "scheme": "bearer"}}
    spec["components"] = components
    spec["tags"] = [
        {"name": TAG, "description": "studies, jobs, DICOMweb"},
        *(spec.get("tags") or []),
    ]
    return spec


async def openapi_document(request: Request) -> Response:
    return JSONResponse(request.app.state.openapi)


async def docs_page(request: Request) -> Response:
    return HTMLResponse(DOCS_PAGE)


async def problem_type(request: Request) -> Response:
    """``GET /problems/{slug}``: what a problem ``type`` means (RFC 9457 3.1.1)."""
    slug = str(request.path_params["slug"])
    if slug not in PROBLEM_TYPES:
        raise HTTPException(404)
    title, meaning = PROBLEM_TYPES[slug]
    return JSONResponse({"type": f"/problems/{slug}", "title": title, "description": meaning})
