"""The three services' HTTP APIs, called with the signed-in user's own bearer token: the
services decide what the user may read or change, and their refusals reach the page as they
are (a 403 stays a 403)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import httpx

from services.web.settings import WebSettings

ServiceName = Literal["goal", "metrics", "alignment"]
SERVICES: tuple[ServiceName, ...] = ("goal", "metrics", "alignment")


class ServiceRefused(Exception):
    """A service answered 4xx or 5xx: ``detail`` is its own explanation (a text, or the
    list of field errors of a 422)."""

    def __init__(self, service: ServiceName, status: int, detail: Any) -> None:
        super().__init__(f"{service} answered {status}")
        self.service = service
        self.status = status
        self.detail = detail

    @property
    def message(self) -> str:
        if isinstance(self.detail, str):
            return self.detail
        if isinstance(self.detail, list):
            return "; ".join(str(item.get("msg", item)) for item in self.detail)
        return f"{self.service} answered {self.status}"


class ServiceUnavailable(Exception):
    def __init__(self, service: ServiceName) -> None:
        super().__init__(f"the {service} service does not answer")
        self.service = service


def instant(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


class Backend:
    """One connection pool to the services for the whole process."""

    def __init__(self, settings: WebSettings, transport: httpx.AsyncBaseTransport | None = None):
        self.urls: dict[ServiceName, str] = {
            "goal": settings.goal_url,
            "metrics": settings.metrics_url,
            "alignment": settings.alignment_url,
        }
        self.client = httpx.AsyncClient(
            timeout=settings.backend_timeout_seconds,
            transport=transport,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
        )

    def as_user(self, token: str) -> UserClient:
        return UserClient(self, token)

    async def close(self) -> None:
        await self.client.aclose()


@dataclass(frozen=True)
class UserClient:
    backend: Backend
    token: str

    async def call(
        self,
        service: ServiceName,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
    ) -> Any:
        query = {k: v for k, v in (params or {}).items() if v not in (None, "")}
        try:
            answer = await self.backend.client.request(
                method,
                self.backend.urls[service] + path,
                params=query,
                json=body,
                headers={"Authorization": f"Bearer {self.token}"},
            )
        except httpx.HTTPError:
            raise ServiceUnavailable(service) from None  # never the request: it holds the token
        if answer.status_code >= 400:
            try:
                detail = answer.json().get("detail")
            except ValueError:
                detail = None
            raise ServiceRefused(service, answer.status_code, detail)
        return answer.json()

    # goal

    async def objectives(self, **filters: str | None) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await self.call("goal", "GET", "/objectives", params=filters)
        return found

    async def objective(self, objective_id: str, as_of: datetime | None) -> dict[str, Any]:
        found: dict[str, Any] = await self.call(
            "goal", "GET", f"/objectives/{objective_id}", params={"as_of": instant(as_of)}
        )
        return found

    async def create_objective(self, body: dict[str, Any]) -> dict[str, Any]:
        created: dict[str, Any] = await self.call("goal", "POST", "/objectives", body=body)
        return created

    async def redefine_objective(self, objective_id: str, body: dict[str, Any]) -> dict[str, Any]:
        changed: dict[str, Any] = await self.call(
            "goal", "PUT", f"/objectives/{objective_id}", body=body
        )
        return changed

    async def archive_objective(self, objective_id: str, reason: str | None) -> None:
        await self.call(
            "goal", "POST", f"/objectives/{objective_id}/archive", body={"reason": reason}
        )

    async def check_in(self, objective_id: str, key_result_id: str, body: dict[str, Any]) -> None:
        path = f"/objectives/{objective_id}/key-results/{key_result_id}/check-ins"
        await self.call("goal", "POST", path, body=body)

    async def objective_history(self, objective_id: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await self.call(
            "goal", "GET", f"/objectives/{objective_id}/history"
        )
        return found

    # alignment

    async def tree(
        self, period: str | None, org_unit: str | None, as_of: datetime | None
    ) -> list[dict[str, Any]]:
        params = {"period": period, "org_unit": org_unit, "as_of": instant(as_of)}
        found: list[dict[str, Any]] = await self.call("alignment", "GET", "/tree", params=params)
        return found

    async def objective_score(self, objective_id: str, as_of: datetime | None) -> dict[str, Any]:
        found: dict[str, Any] = await self.call(
            "alignment",
            "GET",
            f"/objectives/{objective_id}/score",
            params={"as_of": instant(as_of)},
        )
        return found

    async def key_result_scores(self, key_result_id: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await self.call(
            "alignment", "GET", f"/key-results/{key_result_id}/scores"
        )
        return found

    async def gaps(self, as_of: datetime | None) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await self.call(
            "alignment", "GET", "/gaps", params={"as_of": instant(as_of)}
        )
        return found

    # metrics

    async def kpis(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await self.call("metrics", "GET", "/kpis")
        return found

    async def kpi(self, key: str, as_of: datetime | None) -> dict[str, Any]:
        found: dict[str, Any] = await self.call(
            "metrics", "GET", f"/kpis/{key}", params={"as_of": instant(as_of)}
        )
        return found

    async def kpi_history(self, key: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await self.call("metrics", "GET", f"/kpis/{key}/history")
        return found

    async def kpi_readings(
        self, key: str, since: datetime | None, until: datetime | None, limit: int = 10_000
    ) -> list[dict[str, Any]]:
        params = {"since": instant(since), "until": instant(until), "limit": limit}
        found: list[dict[str, Any]] = await self.call(
            "metrics", "GET", f"/kpis/{key}/readings", params=params
        )
        return found

    # every service

    async def audit_verify(self, service: ServiceName) -> dict[str, Any]:
        found: dict[str, Any] = await self.call(service, "GET", "/audit/verify")
        return found
