"""The HTTP rules every service's routes follow: strict JSON bodies of bounded size, error
answers in one shape (4xx naming the field and the rule, never a 500 for bad input), instants
as ISO-8601 text, and every request measured. The app that puts them together with the
service's routers is ``service_app``."""

from __future__ import annotations

import email.message
import json
import re
import time
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from prometheus_client import Counter, Histogram
from pydantic import AwareDatetime, BaseModel, BeforeValidator, Field
from pydantic_core import PydanticCustomError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.shared.errors import Conflict, NotFound, RuleViolation

#: Larger bodies are answered 413 before they are parsed (BodyLimit). The largest legitimate
#: body, 10,000 readings, takes about 2 MB (5.5 MB with every field at its longest).
MAX_BODY_BYTES = 8 * 1024 * 1024

#: A ``\ud800``-``\udfff`` escape somewhere in the raw body: the cheap test before the search
#: for a lone surrogate (valid pairs match too).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class ErrorMessage(BaseModel):
    """A 404, 409 or 413 answer."""

    detail: str = Field(description="What is wrong, for people.")


class FieldError(BaseModel):
    loc: list[str | int] = Field(
        description="Where: body, query, path or header, then field names and list indexes."
    )
    msg: str = Field(description="What is wrong, for people.")
    type: str = Field(description="The rule broken, for programs.")


class FieldErrors(BaseModel):
    """A 415 or 422 answer: every wrong field with the rule it breaks."""

    detail: list[FieldError]


_ERROR_RESPONSES: dict[int, dict[str, Any]] = {
    404: {"model": ErrorMessage, "description": "No such objective, key result or KPI"},
    409: {
        "model": ErrorMessage,
        "description": "Not allowed in the current state, or changed concurrently: read, retry",
    },
    413: {"model": ErrorMessage, "description": f"Body larger than {MAX_BODY_BYTES} bytes"},
    415: {"model": FieldErrors, "description": "Body not sent as application/json"},
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` for the errors an operation can answer besides 422, which
    FastAPI declares itself for every operation with parameters or a body."""
    return {code: _ERROR_RESPONSES[code] for code in codes}


#: What every operation that reads a JSON body can answer besides its own errors.
BODY_ERRORS = (413, 415)


def _iso_text(value: Any) -> Any:
    # pydantic also reads "12" or "1.5" as Unix time: the API takes ISO-8601 text only.
    if isinstance(value, str) and not _ISO_DATE.match(value):
        raise PydanticCustomError(
            "datetime_iso", "expected an ISO-8601 date-time with a timezone: 2026-03-31T12:00:00Z"
        )
    return value


#: An instant in a query (``as_of``, ``since``, ``until``): ISO-8601 with a timezone.
Instant = Annotated[AwareDatetime, BeforeValidator(_iso_text)]


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the body is larger than {limit} bytes")


class BodyLimit:
    """Answers 413 to a body over ``limit`` bytes: at once when its Content-Length says so,
    else as soon as the bytes read pass it (a chunked body), so it is never parsed whole.

    FastAPI's own ``max_body_size`` answers the first case in plain text, not JSON.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            error = BodyTooLarge(self.limit)
            response = JSONResponse({"detail": error.detail}, status_code=error.status_code)
            await response(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                # An HTTPException: FastAPI lets it through its body parsing to the handler.
                raise BodyTooLarge(self.limit)
            return message

        await self.app(scope, counted, send)


def _is_json(content_type: str | None) -> bool:
    # The test FastAPI applies before it parses a body as JSON.
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def _lone_surrogate(value: Any) -> tuple[str | int, ...] | None:
    """Where in a parsed body a string holds a lone surrogate (from a JSON escape such as
    ``"\\ud800"``): no Unicode text, so neither a store nor a JSON encoder takes it."""
    pending: list[tuple[tuple[str | int, ...], Any]] = [((), value)]
    while pending:  # iterative: the parser accepts nesting deeper than Python's stack
        where, item = pending.pop()
        if isinstance(item, str) and not item.isascii():
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return where
        elif isinstance(item, dict):
            for key, child in item.items():
                shown = key.encode("utf-8", "backslashreplace").decode()
                if shown != key:
                    return (*where, shown)
                pending.append(((*where, key), child))
        elif isinstance(item, list):
            pending.extend(((*where, index), child) for index, child in enumerate(item))
    return None


class JSONRequest(Request):
    async def json(self) -> Any:
        """The body parsed once, with every way of being unparsable a ``JSONDecodeError``,
        which FastAPI answers 422 ``json_invalid`` (where it would answer 400 without a
        word for invalid UTF-8 or nesting too deep for the parser)."""
        if not hasattr(self, "_parsed"):
            body = await self.body()
            try:
                self._parsed = json.loads(body)
            except UnicodeDecodeError as error:
                raise json.JSONDecodeError(f"not UTF-8 ({error.reason})", "", error.start) from None
            except RecursionError:
                raise json.JSONDecodeError("nested too deeply", "", 0) from None
        return self._parsed


class JSONRoute(APIRoute):
    """A route that takes JSON bodies only, as text: any other Content-Type is answered 415,
    and a string with a lone surrogate 422, both naming the field."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()
        takes_body = self.body_field is not None

        async def strictly_json(request: Request) -> Response:
            request = JSONRequest(request.scope, request.receive)
            body = await request.body() if takes_body else b""
            if body and not _is_json(request.headers.get("content-type")):
                detail = {
                    "loc": ["header", "content-type"],
                    "msg": "send the body as JSON (Content-Type: application/json)",
                    "type": "unsupported_media_type",
                }
                return JSONResponse({"detail": [detail]}, status_code=415)
            if _SURROGATE_ESCAPE.search(body):
                try:
                    where = _lone_surrogate(await request.json())
                except json.JSONDecodeError:
                    where = None  # FastAPI answers it, as json_invalid
                if where is not None:
                    raise RequestValidationError(
                        [
                            {
                                "type": "string_unicode",
                                "loc": ("body", *where),
                                "msg": "a lone surrogate (\\ud800 to \\udfff) is no text",
                            }
                        ]
                    )
            return await handle(request)

        return strictly_json


def _field_errors(error: RequestValidationError) -> list[dict[str, Any]]:
    """Field, rule and message of each error, without the input FastAPI would echo back: a
    20 MB string, or a NaN that JSON cannot carry."""
    found = []
    for item in error.errors():
        message = item["msg"]
        if item["type"] == "json_invalid" and "error" in item.get("ctx", {}):
            message = f"{message}: {item['ctx']['error']}"
        found.append({"loc": list(item["loc"]), "msg": message, "type": item["type"]})
    return found


#: What a request is counted under, read from its ASGI scope once it was answered.
RouteOf = Callable[[Scope], str]


class RequestMeter:
    """Counts and times each HTTP request in ``requests`` and ``seconds`` by the route
    ``route_of`` names: a template (``/objectives/{objective_id}``), never the raw path, so
    that labels stay bounded. A request that fails before it is answered counts as a 500.

    Plain ASGI, not ``app.middleware("http")``: Starlette runs such a middleware's every
    request through a task group and a streamed copy of the response, a large share of the
    CPU of a small request (docs/benchmarks.md)."""

    def __init__(
        self, app: ASGIApp, requests: Counter, seconds: Histogram, route_of: RouteOf
    ) -> None:
        self.app = app
        self.requests = requests
        self.seconds = seconds
        self.route_of = route_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noting_status)
        finally:
            route = self.route_of(scope)
            self.requests.labels(scope["method"], route, str(status)).inc()
            self.seconds.labels(scope["method"], route).observe(time.perf_counter() - started)


def route_template(scope: Scope) -> str:
    """The template of the route the request matched (the router notes it in the scope),
    or ``unmatched``."""
    template: str = getattr(scope.get("route"), "path", "unmatched")
    return template


async def _invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
    return JSONResponse({"detail": _field_errors(error)}, status_code=422)


async def _rule_violation(_: Request, error: RuleViolation) -> JSONResponse:
    # The shape of FastAPI's own validation errors, so clients parse one format.
    detail: list[dict[str, Any]] = [
        {"loc": ["body", *v.field], "msg": v.message, "type": v.rule} for v in error.violations
    ]
    return JSONResponse({"detail": detail}, status_code=422)


async def _not_found(_: Request, error: NotFound) -> JSONResponse:
    return JSONResponse({"detail": str(error)}, status_code=404)


async def _conflict(_: Request, error: Conflict) -> JSONResponse:
    return JSONResponse({"detail": str(error)}, status_code=409)


def answer_errors(app: FastAPI) -> None:
    """Answer invalid requests and broken rules 422 with every field and rule, ``NotFound``
    404 and ``Conflict`` 409, each as JSON."""
    app.exception_handler(RequestValidationError)(_invalid_request)
    app.exception_handler(RuleViolation)(_rule_violation)
    app.exception_handler(NotFound)(_not_found)
    app.exception_handler(Conflict)(_conflict)
