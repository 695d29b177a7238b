"""The two loads the driver puts on the system while faults strike: readings streamed into
``kpi.readings`` (as outside systems do) and objective changes over the goal service's HTTP
API (as people do). Both ride out the faults: a failed send is sent again, a write whose
answer was lost is looked up once the service is back."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
import time
from collections.abc import Sequence
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from contracts import KPI_READINGS
from tests.faults.journal import Journal
from tests.faults.stack import Stack
from tests.faults.workload import (
    ObjectiveDesigner,
    ObjectivePlan,
    Reading,
    comparable_definition,
)
from tests.support import wait_for

log = logging.getLogger(__name__)
#: Readings per acknowledged chunk: what is sent again when a send fails.
CHUNK = 200
#: How long the goal service may stay away before the writer gives up on it.
SERVICE_ABSENCE = 180.0


async def send_readings(producer: AIOKafkaProducer, readings: Sequence[Reading]) -> None:
    """Send and wait until the broker acknowledged every one."""
    sent = [
        await producer.send(KPI_READINGS, json.dumps(r.message()).encode(), key=r.kpi.encode())
        for r in readings
    ]
    await asyncio.gather(*sent)


def new_producer(bootstrap: str) -> AIOKafkaProducer:
    # Acknowledged by the broker before the driver counts a reading as sent; a request may
    # wait out a broker restart.
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, request_timeout_ms=30_000
    )


def resend(bootstrap: str, readings: Sequence[Reading]) -> None:
    """Send ``readings`` again, as a source system does after Kafka lost them."""

    async def run() -> None:
        producer = new_producer(bootstrap)
        await producer.start()
        try:
            for start in range(0, len(readings), 2000):
                await send_readings(producer, readings[start : start + 2000])
        finally:
            await producer.stop()

    asyncio.run(run())


class ReadingStream(threading.Thread):
    """Streams the messages at ``rate`` per second, in order, chunk by chunk. ``sent`` counts
    the messages the broker acknowledged (a prefix of the list)."""

    def __init__(self, stack: Stack, readings: Sequence[Reading], rate: float) -> None:
        super().__init__(name="reading-stream", daemon=True)
        self.stack = stack
        self.readings = readings
        self.rate = rate
        self.sent = 0
        #: Messages sent again because their chunk's send failed (a broker outage).
        self.resent = 0
        self.failures = 0
        #: Cleared by the fault schedule to hold the stream (while the broker is wiped).
        self.may_send = threading.Event()
        self.may_send.set()
        self.parked = threading.Event()
        self.finished = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._stream())
        except BaseException as error:
            self.error = error
        finally:
            self.finished.set()

    async def _stream(self) -> None:
        started = time.monotonic()
        producer: AIOKafkaProducer | None = None
        try:
            while self.sent < len(self.readings):
                if not self.may_send.is_set():
                    if producer is not None:  # the broker it knew is gone
                        await producer.stop()
                        producer = None
                    self.parked.set()
                    await asyncio.to_thread(self.may_send.wait)
                    self.parked.clear()
                # Pacing: the readings arrive at the planned rate, not all at once.
                due = started + self.sent / self.rate
                if due > time.monotonic():
                    await asyncio.sleep(due - time.monotonic())
                chunk = self.readings[self.sent : self.sent + CHUNK]
                try:
                    if producer is None:
                        producer = new_producer(self.stack.bootstrap)
                        await producer.start()
                    await send_readings(producer, chunk)
                except (KafkaError, OSError) as error:
                    # Unacknowledged: the whole chunk goes again (exact copies, same ids).
                    self.failures += 1
                    self.resent += len(chunk)
                    log.info("sending readings failed (%s); sending the chunk again", error)
                    if producer is not None:
                        await producer.stop()
                        producer = None
                    await asyncio.sleep(0.5)  # back-off while the broker is away
                    continue
                self.sent += len(chunk)
        finally:
            if producer is not None:
                await producer.stop()


class ObjectiveWriter(threading.Thread):
    """Makes ``changes`` objective changes spread over ``duration`` seconds: creates (a few
    company objectives with roll-ups, then team objectives aligned to them), redefinitions,
    check-ins and archivals. ``plans`` is what the goal service must hold in the end."""

    def __init__(
        self,
        stack: Stack,
        journal: Journal,
        changes: int,
        duration: float,
        rng: random.Random,
    ) -> None:
        super().__init__(name="objective-writer", daemon=True)
        self.stack = stack
        self.journal = journal
        self.changes = changes
        self.duration = duration
        self.rng = rng
        self.designer = ObjectiveDesigner(rng)
        self.plans: list[ObjectivePlan] = []
        self.done = 0
        #: What the writer is doing right now, for the report of a fault.
        self.current = "nothing yet"
        #: Writes whose answer was lost, and what the driver found the service had done.
        self.lost: list[str] = []
        #: Answers that should not happen (4xx to a valid write, 5xx, an outcome that is
        #: neither the state before nor the state asked for).
        self.anomalies: list[str] = []
        self.finished = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._write()
        except BaseException as error:
            self.error = error
        finally:
            self.finished.set()

    def _write(self) -> None:
        started = time.monotonic()
        parents = max(2, self.changes // 40)
        for step in range(self.changes):
            due = started + step * self.duration / self.changes
            if due > time.monotonic():
                time.sleep(due - time.monotonic())  # pacing, as people change things
            if step < parents:
                self._create(parent=True)
            else:
                self._change()
            self.done = step + 1

    # -- one change -------------------------------------------------------------------------

    def _active(self, *, parent: bool | None = None) -> list[ObjectivePlan]:
        return [
            plan
            for plan in self.plans
            if not plan.archived and (parent is None or plan.parent == parent)
        ]

    def _change(self) -> None:
        roll = self.rng.random()
        children = self._active(parent=False)
        if roll < 0.3 or len(children) < 3:
            self._create(parent=False)
        elif roll < 0.68:
            self._redefine(self.rng.choice(self._active()))
        elif roll < 0.92:
            plan = self.rng.choice(self._active())
            if not self._check_in(plan):
                self._redefine(plan)
        else:
            self._archive(self.rng.choice(children))

    def _create(self, *, parent: bool) -> None:
        token = f"O{len(self.plans) + 1}"
        parents = self._active(parent=True)
        aligned = self.rng.choice(parents) if parents and self.rng.random() < 0.75 else None
        body = self.designer.parent(token) if parent else self.designer.child(token, aligned)
        plan = ObjectivePlan(token=token, parent=parent, body=body)
        self.current = f"create {token}"
        while True:
            answer = self._send("POST", "/objectives", body)
            if answer is not None:
                if answer.status_code != 201:
                    self._anomaly(f"create {token}", answer)
                    return
                self._adopt(plan, answer.json()["objective"], body)
                break
            found = self._find(token)
            if found is not None:
                self._lost_note(f"create {token}: stored")
                self._adopt(plan, found, body)
                break
            self._lost_note(f"create {token}: not stored; sending it again")
        self.plans.append(plan)

    def _redefine(self, plan: ObjectivePlan) -> None:
        body = self.designer.redefinition(plan)
        self.current = f"redefine {plan.token}"
        path = f"/objectives/{plan.objective_id}"
        answer = self._send("PUT", path, body)
        if answer is not None:
            if answer.status_code != 200:
                self._anomaly(f"redefine {plan.token}", answer)
            else:
                self._adopt(plan, answer.json()["objective"], body)
            return
        stored = self._read(path)["objective"]
        if comparable_definition(stored) == _asked(body, stored):
            self._lost_note(f"redefine {plan.token}: applied")
            self._adopt(plan, stored, body)
        elif comparable_definition(stored) == plan.expected():
            self._lost_note(f"redefine {plan.token}: not applied")
        else:
            self.anomalies.append(
                f"redefine {plan.token}: after a lost answer the service holds neither the "
                f"definition before nor the one asked for: {stored}"
            )

    def _check_in(self, plan: ObjectivePlan) -> bool:
        comment = f"{plan.token}-c{self.done}"
        drawn = self.designer.check_in(plan, comment)
        if drawn is None:
            return False
        key_result_id, body = drawn
        self.current = f"check in {plan.token}"
        path = f"/objectives/{plan.objective_id}/key-results/{key_result_id}/check-ins"
        answer = self._send("POST", path, body)
        if answer is not None:
            if answer.status_code != 201:
                self._anomaly(f"check in {plan.token}", answer)
            else:
                plan.check_ins[key_result_id] = body
            return True
        view = self._read(f"/objectives/{plan.objective_id}")
        stored = next(kr for kr in view["key_results"] if kr["id"] == key_result_id)
        applied = (stored.get("check_in") or {}).get("comment") == comment
        self._lost_note(f"check in {plan.token}: {'applied' if applied else 'not applied'}")
        if applied:
            plan.check_ins[key_result_id] = body
        return True

    def _archive(self, plan: ObjectivePlan) -> None:
        self.current = f"archive {plan.token}"
        path = f"/objectives/{plan.objective_id}"
        answer = self._send("POST", f"{path}/archive", {"reason": f"{plan.token} done"})
        if answer is not None:
            if answer.status_code != 200:
                self._anomaly(f"archive {plan.token}", answer)
            else:
                plan.archived = True
            return
        archived = self._read(path)["objective"]["status"] == "archived"
        self._lost_note(f"archive {plan.token}: {'applied' if archived else 'not applied'}")
        plan.archived = archived

    # -- plumbing ---------------------------------------------------------------------------

    def _send(self, method: str, path: str, body: Any) -> httpx.Response | None:
        """The answer, or None when it was lost (connection refused or cut by a kill, or a
        5xx): then the outcome is unknown, and the goal service is awaited before looking."""
        try:
            answer = self.stack.api("goal").request(method, path, body)
        except httpx.TransportError:
            answer = None
        if answer is not None and answer.status_code < 500:
            return answer
        if answer is not None:
            self.anomalies.append(f"{method} {path}: {answer.status_code} {answer.text[:300]}")
        wait_for(
            lambda: self.stack.answers("goal"),
            within=SERVICE_ABSENCE,
            what="the goal service to come back",
        )
        return None

    def _read(self, path: str) -> Any:
        """A GET that waits for the goal service when a fault took it away meanwhile."""
        while True:
            try:
                return self.stack.api("goal").get(path)
            except httpx.TransportError:
                wait_for(
                    lambda: self.stack.answers("goal"),
                    within=SERVICE_ABSENCE,
                    what="the goal service to come back",
                )

    def _find(self, token: str) -> dict[str, Any] | None:
        """The stored objective whose title carries ``token``, if the create was stored."""
        for definition in self._read("/objectives"):
            if definition["title"].split(" ", 1)[0] == token:
                found: dict[str, Any] = definition
                return found
        return None

    def _adopt(self, plan: ObjectivePlan, stored: dict[str, Any], asked: dict[str, Any]) -> None:
        """Take the stored definition (and the ids the service gave) as the plan's, after
        checking it is the one asked for."""
        if comparable_definition(stored) != _asked(asked, stored):
            self.anomalies.append(f"{plan.token}: stored {stored} is not what was asked: {asked}")
        plan.objective_id = stored["id"]
        plan.revision += 1
        plan.body = _command_fields(stored)
        kept = {kr["id"] for kr in stored["key_results"]}
        plan.check_ins = {kr: c for kr, c in plan.check_ins.items() if kr in kept}

    def _lost_note(self, text: str) -> None:
        self.lost.append(text)
        self.journal.note(f"answer lost in a fault, looked up: {text}")

    def _anomaly(self, what: str, answer: httpx.Response) -> None:
        self.anomalies.append(f"{what}: {answer.status_code} {answer.text[:300]}")


def _command_fields(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored definition as the command that sets it again (key results with their ids)."""
    period = stored["period"]
    return {
        "title": stored["title"],
        "owner": stored["owner"],
        "org_unit": stored["org_unit"],
        "level": stored["level"],
        "period": period["label"] if isinstance(period, dict) else period,
        "type": stored["type"],
        "weight": stored["weight"],
        **(
            {
                "parent_id": stored["parent_id"],
                "parent_key_result_id": stored["parent_key_result_id"],
            }
            if stored.get("parent_id")
            else {}
        ),
        "key_results": [
            {
                k: v
                for k, v in kr.items()
                if v is not None
                and k
                in (
                    "id",
                    "title",
                    "kind",
                    "kpi",
                    "aggregation",
                    "baseline",
                    "target",
                    "weight",
                    "checklist",
                )
            }
            for kr in stored["key_results"]
        ],
    }


def _asked(body: dict[str, Any], stored: dict[str, Any]) -> dict[str, Any]:
    """The comparable definition a command asks for, its new key results given the ids the
    service chose (stored in the same order)."""
    asked = comparable_definition({**body, "status": "active"})
    chosen = [kr["id"] for kr in stored["key_results"]]
    if len(chosen) == len(asked["key_results"]):
        for key_result, given in zip(asked["key_results"], chosen, strict=True):
            key_result["id"] = key_result["id"] or given
    return asked
