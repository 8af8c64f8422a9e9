"""The OpenAPI document (``GET /openapi.json``): FastAPI's, completed with the schemas the routes refer to.

Routes refer to ``#/components/schemas/NAME`` (:func:`ref`); :func:`install` puts those schemas into the
document, so that every reference in it resolves:

* ``prediction`` and the record kinds it contains (``window``, ``segment``): generated from
  :func:`soundscene.core.records.schema_of`, the one schema of every soundscene output, with its
  ``#/$defs/KIND`` references rebased onto ``#/components/schemas/KIND``;
* ``upload``: the multipart form of ``POST /v1/classify``, with this app's size limit;
* ``error_body``: ``{"error": "one line"}``, the body of every error.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from ...core import records

COMPONENTS = "#/components/schemas/"
ERROR_BODY = {"type": "object", "required": ["error"], "additionalProperties": False,
              "properties": {"error": {"type": "string", "description": "why, in one line"}}}


def ref(name: str) -> dict[str, str]:
    """A reference to the component schema ``name``."""
    return {"$ref": COMPONENTS + name}


ERROR_RESPONSE = {"description": "Refused, with the reason in one line",
                  "content": {"application/json": {"schema": ref("error_body")}}}


def record_components(kind: str) -> dict[str, dict[str, Any]]:
    """The record ``kind`` and every record kind it refers to, as component schemas."""
    schema = records.schema_of(kind)
    defs = schema.pop("$defs")
    out: dict[str, dict[str, Any]] = {}
    todo: list[tuple[str, dict[str, Any]]] = [(kind, schema)]
    while todo:
        name, node = todo.pop()
        if name in out:
            continue
        found: set[str] = set()
        out[name] = _rebase(node, found)
        todo.extend((k, defs[k]) for k in sorted(found) if k not in out)
    return out


def _rebase(node: Any, found: set[str]) -> Any:
    """``node`` with ``#/$defs/KIND`` references pointing into components; the kinds met go into ``found``."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith("#/$defs/"):
                found.add(value[len("#/$defs/"):])
                value = COMPONENTS + value[len("#/$defs/"):]
            out[key] = _rebase(value, found)
        return out
    if isinstance(node, list):
        return [_rebase(v, found) for v in node]
    return node


def upload_form(field: str, limit_text: str) -> dict[str, Any]:
    """The multipart form ``POST /v1/classify`` takes: one file in ``field``."""
    return {"type": "object", "required": [field], "properties": {field: {
        "type": "string", "format": "binary",
        "description": f"the recording: any format libsndfile reads (at most {limit_text})"}}}


def install(app: FastAPI, *, upload: dict[str, Any]) -> None:
    """Make ``app.openapi()`` (and so /openapi.json and /docs) carry the component schemas."""
    schemas = {**record_components("prediction"), "upload": upload, "error_body": ERROR_BODY}
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        doc = generate()  # FastAPI builds it once and keeps it
        doc.setdefault("components", {}).setdefault("schemas", {}).update(schemas)
        return doc

    app.openapi = openapi
