"""The API's one error shape, ``{"error": {"code", "message"}}``: library errors, FastAPI's
validation errors, HTTP errors (unknown route, wrong method) and unexpected exceptions (a 500
with a one-line body; the traceback goes to the server log only) all leave through it."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import ConceptSegError, InputError, ServeError, SessionError

log = logging.getLogger("conceptseg.serve")


def error_response(status: int, code: str, message: str, retry_after: int | None = None):
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers=headers)


def error_of(e: ConceptSegError) -> tuple[int, str]:
    """(HTTP status, code) of a library error."""
    if isinstance(e, ServeError):
        return e.status, e.code
    if isinstance(e, InputError):
        return 422, "invalid_input"
    if isinstance(e, SessionError):
        return 409, "session_conflict"
    return 422, "unprocessable"


def _validation_message(exc: RequestValidationError) -> tuple[int, str, str]:
    errors = exc.errors()
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        return 400, "malformed_json", "the request body is not valid JSON"
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "request"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return 422, "invalid_request", f"{where}: {first.get('msg', 'invalid')}{more}"


def install_errors(app: FastAPI) -> None:
    @app.exception_handler(ConceptSegError)
    async def _library(request, exc: ConceptSegError):
        status, code = error_of(exc)
        return error_response(status, code, str(exc).splitlines()[0] if str(exc) else code,
                              getattr(exc, "retry_after", None))

    @app.exception_handler(RequestValidationError)
    async def _validation(request, exc: RequestValidationError):
        return error_response(*_validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed", 400: "bad_request",
                413: "too_large"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request, exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal error (see the server log)")
