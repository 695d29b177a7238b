"""HTTP to the platform's services as a command-line tool needs it.

httpx is imported when a client or transport is made, not with this module: it is a large
part of ``okr``'s start-up, and ``okr --help`` or a command refused for bad input sends
nothing.

Every failure becomes a ``CliError`` naming the service and its URL (a person can tell at once
whether the service is down, the token is wrong or the input is), and requests that are safe
to repeat are retried with back-off, because a service may restart in the middle of a long
import.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from services.cli.context import TOKEN_VARIABLE, CliError

if TYPE_CHECKING:
    import httpx

#: Seconds. Connecting is quick or the service is down; answering a batch of 10,000 readings
#: that the service writes to its event store may take a while.
CONNECT_TIMEOUT = 5.0
ANSWER_TIMEOUT = 120.0
USER_AGENT = "okr-cli/0.1"
#: Answers that say "try again later" rather than "your request is wrong".
RETRIED_STATUSES = frozenset({408, 429})
#: How many entries of a 422 ``detail`` list go into the one-line message.
DETAILS_SHOWN = 3


def _http_transport() -> httpx.BaseTransport:
    import httpx

    return httpx.HTTPTransport()


#: Makes the transport of every ``ServiceClient``. Tests replace it (monkeypatch) with one
#: returning ``httpx.MockTransport``, so the whole client (headers, retries) runs without network.
transport_factory: Callable[[], httpx.BaseTransport] = _http_transport
#: Waits between attempts; tests replace it so that back-off costs no time.
pause: Callable[[float], None] = time.sleep


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to repeat a request that is safe to repeat.

    Delays double from ``first_delay`` up to ``max_delay``: the default five attempts wait
    0.5 + 1 + 2 + 4 seconds, about the time a service takes to restart.
    """

    attempts: int = 5
    first_delay: float = 0.5
    max_delay: float = 8.0

    def delay(self, failures: int) -> float:
        """The wait after the ``failures``-th failed attempt (1 for the first)."""
        return float(min(self.first_delay * 2 ** (failures - 1), self.max_delay))


NO_RETRY = RetryPolicy(attempts=1)


class ServiceClient:
    """One service's HTTP API: answers 2xx or raises a one-line ``CliError``.

    A refused connection before the service ever answered fails at once instead of retrying:
    the service is simply not running, and the person should hear so now, not after the
    back-off. Once it has answered, connection errors mean it is restarting, and are retried.
    """

    def __init__(
        self,
        service: str,
        base_url: str,
        token: str | None,
        *,
        correlation_id: str | None = None,
        actor: str | None = None,
    ) -> None:
        import httpx

        self.service = service
        self.base_url = base_url
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if correlation_id:
            headers["X-Correlation-ID"] = correlation_id
        if actor:
            headers["X-Actor"] = actor
        self._http = httpx.Client(
            base_url=base_url,
            headers=headers,
            timeout=httpx.Timeout(ANSWER_TIMEOUT, connect=CONNECT_TIMEOUT),
            transport=transport_factory(),
        )
        self._answered = False

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def send(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        retry: RetryPolicy = NO_RETRY,
    ) -> httpx.Response:
        """Send one request, repeating it under ``retry`` on connection errors, timeouts and
        5xx/429 answers; only for requests the service treats idempotently."""
        import httpx

        failures = 0
        while True:
            failures += 1
            last_attempt = failures >= retry.attempts
            try:
                response = self._http.request(method, path, json=json_body)
            except httpx.TransportError as error:
                never_answered = not self._answered and isinstance(
                    error, httpx.ConnectError | httpx.ConnectTimeout
                )
                if last_attempt or never_answered:
                    raise CliError(self._unreachable(error, failures)) from error
            else:
                self._answered = True
                if response.is_success:
                    return response
                temporary = response.is_server_error or response.status_code in RETRIED_STATUSES
                if last_attempt or not temporary:
                    raise CliError(self._refused(response, failures))
            pause(retry.delay(failures))

    def _unreachable(self, error: httpx.TransportError, attempts: int) -> str:
        reason = str(error) or type(error).__name__
        tried = f" (tried {attempts} times)" if attempts > 1 else ""
        return f"cannot reach the {self.service} service at {self.base_url}: {reason}{tried}"

    def _refused(self, response: httpx.Response, attempts: int) -> str:
        tried = f" (tried {attempts} times)" if attempts > 1 else ""
        message = (
            f"the {self.service} service at {self.base_url} answered "
            f"{response.status_code} {response.reason_phrase}{tried}: {describe_answer(response)}"
        )
        if response.status_code in (401, 403):
            message += f"; is {TOKEN_VARIABLE} set to a token allowed to do this?"
        return message


def describe_answer(response: httpx.Response) -> str:
    """The gist of an error answer in one line: FastAPI's ``detail`` (a string, or a list of
    ``{"loc", "msg"}`` entries) when there is one, else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        body = None
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list) and detail:
        shown = "; ".join(_describe_violation(entry) for entry in detail[:DETAILS_SHOWN])
        hidden = len(detail) - DETAILS_SHOWN
        return f"{shown}; and {hidden} more" if hidden > 0 else shown
    text = " ".join(response.text.split())
    return text[:200] or "(no details)"


def _describe_violation(entry: object) -> str:
    if not isinstance(entry, dict):
        return str(entry)
    location = entry.get("loc")
    where = ".".join(str(part) for part in location) if isinstance(location, list) else ""
    message = str(entry.get("msg", entry))
    return f"{where}: {message}" if where else message
