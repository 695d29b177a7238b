"""Who may call a service: bearer tokens with roles, from configuration.

- ``reader`` reads, ``writer`` changes (POST, PUT, PATCH, DELETE), ``auditor`` reads the audit
  endpoints (``/audit/...`` and the ``.../history`` of changes). A token holds any of them.
- Operations endpoints (``/healthz``, ``/readyz``, ``/metrics``) and the API documents are
  open: orchestrators and Prometheus call them without credentials.
- Tokens are configured by their SHA-256 only (``okr-token`` makes one and prints its entry),
  so the configuration never holds a usable secret. They are random and long, so a fast hash
  is enough; comparison takes constant time. A token is never logged or echoed.
- 401 (no or unknown token, with ``WWW-Authenticate: Bearer``) and 403 (a known token without
  the role) are JSON, with distinct ``type``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, TypeAdapter
from starlette.types import ASGIApp, Receive, Scope, Send

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/docs", "/openapi.json", "/redoc"})


class Role(StrEnum):
    reader = "reader"
    writer = "writer"
    auditor = "auditor"


class TokenEntry(BaseModel):
    """One configured token, as it is kept at rest."""

    name: str = Field(min_length=1, max_length=200, description="Whom it belongs to: the actor.")
    roles: list[Role] = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the token, in hex.")


TOKEN_ENTRIES = TypeAdapter(list[TokenEntry])


class AuthError(BaseModel):
    """A 401 or 403 answer."""

    detail: str
    type: str = Field(description="unauthenticated (401) or forbidden (403).")


@dataclass(frozen=True)
class Principal:
    name: str
    roles: frozenset[Role]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(name: str, roles: Sequence[Role]) -> tuple[str, TokenEntry]:
    """A fresh random token and its entry for the configuration."""
    token = secrets.token_urlsafe(32)
    return token, TokenEntry(name=name, roles=list(roles), sha256=hash_token(token))


class Tokens:
    def __init__(self, entries: Sequence[TokenEntry]) -> None:
        self._entries = [
            (bytes.fromhex(e.sha256), Principal(e.name, frozenset(e.roles))) for e in entries
        ]

    def __len__(self) -> int:
        return len(self._entries)

    @classmethod
    def parse(cls, text: str) -> Tokens:
        """From the JSON list of entries (``OKR_AUTH_TOKENS`` or the file it names)."""
        return cls(TOKEN_ENTRIES.validate_json(text))

    def authenticate(self, token: str) -> Principal | None:
        presented = hashlib.sha256(token.encode()).digest()
        found = None
        for digest, principal in self._entries:  # no early exit: the same time for all
            if hmac.compare_digest(presented, digest):
                found = principal
        return found


def required_role(method: str, path: str) -> Role | None:
    """The role an operation needs; None for the open ones."""
    if path in OPEN_PATHS or path.startswith("/docs/"):
        return None
    if path.startswith("/audit/") or path.endswith("/history"):
        return Role.auditor
    if method in ("GET", "HEAD", "OPTIONS"):
        return Role.reader
    return Role.writer


class Authentication:
    """ASGI middleware: answers 401/403 before any route runs, and hands the route the
    authenticated principal (``request.state.principal``)."""

    def __init__(self, app: ASGIApp, tokens: Tokens) -> None:
        self.app = app
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        role = required_role(scope["method"], scope["path"]) if scope["type"] == "http" else None
        if role is None:
            await self.app(scope, receive, send)
            return
        presented = _bearer_token(scope)
        principal = self.tokens.authenticate(presented) if presented else None
        if presented is None:
            await _deny(send, 401, "a bearer token is required (Authorization: Bearer ...)")
        elif principal is None:
            await _deny(send, 401, "the bearer token is not one this service knows")
        elif role not in principal.roles:
            await _deny(send, 403, f"this operation needs the role {role.value!r}")
        else:
            scope.setdefault("state", {})["principal"] = principal
            await self.app(scope, receive, send)


def _bearer_token(scope: Scope) -> str | None:
    """The token of an ``Authorization: Bearer`` header, if the request has one."""
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


async def _deny(send: Send, status: int, detail: str) -> None:
    kind = "unauthenticated" if status == 401 else "forbidden"
    body = json.dumps({"detail": detail, "type": kind}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="okr"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def document_security(schema: dict[str, Any]) -> dict[str, Any]:
    """Declare the bearer scheme, each operation's role and its 401/403 answers in an
    OpenAPI document, so that clients (and schemathesis) know them."""
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {})["bearer"] = {"type": "http", "scheme": "bearer"}
    components.setdefault("schemas", {})["AuthError"] = AuthError.model_json_schema()
    answer = {
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AuthError"}}}
    }
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            role = required_role(method.upper(), path)
            if role is None:
                continue
            operation["security"] = [{"bearer": []}]
            operation["description"] = (
                f"{operation.get('description', '')}\n\nNeeds a bearer token with the role "
                f"`{role.value}`."
            ).strip()
            operation.setdefault("responses", {}).update(
                {
                    "401": answer | {"description": "No token, or an unknown one"},
                    "403": answer | {"description": f"The token lacks the role {role.value}"},
                }
            )
    return schema


def main() -> None:
    """``okr-token NAME ROLE...``: print a new token, and its entry for ``OKR_AUTH_TOKENS``."""
    if len(sys.argv) < 3:
        sys.exit("usage: okr-token NAME ROLE... (roles: reader writer auditor)")
    try:
        roles = [Role(role) for role in sys.argv[2:]]
    except ValueError as error:
        sys.exit(f"okr-token: {error} (roles: reader writer auditor)")
    token, entry = new_token(sys.argv[1], roles)
    print(f"token (give it to {entry.name}; it is not kept anywhere): {token}")
    print(f"entry for OKR_AUTH_TOKENS: {entry.model_dump_json()}")
