"""The fault driver: streams readings and objective changes through the real broker while it
SIGKILLs and restarts random services at random moments and restarts the broker (once
wiping its data directory while it is down), then checks that nothing was lost or applied
twice and that the scores are what the full history says. It prints what it did and what it
found; a run is replayed with its seed.

    python -m tests.faults --readings 30000 --objective-changes 300 --kills 8 \\
        --broker-restarts 2 --wipe --seed 7
"""

from __future__ import annotations

import logging
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import typer

from services.shared.local_broker import BrokerUnavailable, kafka_jars
from tests.faults import checks
from tests.faults.journal import Finding, Journal
from tests.faults.stack import SERVICES, Stack
from tests.faults.streams import ObjectiveWriter, ReadingStream, resend
from tests.faults.workload import KPIS, make_readings
from tests.support import wait_for


@dataclass(frozen=True)
class Options:
    readings: int = 30_000
    objective_changes: int = 300
    kills: int = 8
    broker_restarts: int = 2
    #: Broker crashes: SIGKILL, then a start on the same data.
    broker_crashes: int = 1
    wipe: bool = True
    seed: int = 1
    #: Readings per second: the stream lasts readings / rate seconds, and the faults and the
    #: objective changes are spread over that time.
    rate: float = 300.0
    #: Share of the messages that are exact copies of a reading sent before.
    duplicates: float = 0.05
    #: After the wipe, restart the services too. By default they stay up: their relays fail
    #: on the empty broker, start over, find the topics' tails behind and republish.
    restart_after_wipe: bool = False
    settle_within: float = 300.0
    work_dir: Path | None = None

    @property
    def duration(self) -> float:
        return self.readings / self.rate


@dataclass(frozen=True)
class Fault:
    #: Seconds after the stream starts.
    at: float
    kind: Literal["kill", "broker", "crash", "wipe"]
    service: str | None
    #: How long the victim stays down.
    down: float

    def describe(self) -> str:
        if self.kind == "kill":
            return f"SIGKILL {self.service}, down {self.down:.1f}s"
        if self.kind == "broker":
            return f"broker restart, down {self.down:.1f}s"
        if self.kind == "crash":
            return f"broker crash (SIGKILL), down {self.down:.1f}s"
        return f"broker wipe, down {self.down:.1f}s"


def plan_faults(options: Options, rng: random.Random) -> list[Fault]:
    """The schedule: each fault at a random moment of the stream (while readings and changes
    are in flight), in time order."""
    faults = [
        Fault(0, "kill", rng.choice(SERVICES), rng.uniform(0.0, 1.5)) for _ in range(options.kills)
    ]
    faults += [
        Fault(0, "broker", None, rng.uniform(0.2, 1.5)) for _ in range(options.broker_restarts)
    ]
    faults += [
        Fault(0, "crash", None, rng.uniform(0.2, 1.5)) for _ in range(options.broker_crashes)
    ]
    if options.wipe:
        faults.append(Fault(0, "wipe", None, rng.uniform(0.2, 1.5)))
    # One fault in each of equal slices of the stream, at a random moment of its slice:
    # random, yet spread out, so that each strikes while readings and changes are flowing.
    span = 0.85 * options.duration / max(len(faults), 1)
    moments = [0.05 * options.duration + span * (n + rng.random()) for n in range(len(faults))]
    rng.shuffle(faults)
    return [
        Fault(at, fault.kind, fault.service, fault.down)
        for at, fault in zip(moments, faults, strict=True)
    ]


class FaultSchedule(threading.Thread):
    """Strikes each fault at its moment and brings the system back, noting what was in
    flight. Faults are struck one at a time."""

    def __init__(
        self,
        stack: Stack,
        journal: Journal,
        faults: list[Fault],
        stream: ReadingStream,
        writer: ObjectiveWriter,
        options: Options,
    ) -> None:
        super().__init__(name="fault-schedule", daemon=True)
        self.stack = stack
        self.journal = journal
        self.faults = faults
        self.stream = stream
        self.writer = writer
        self.options = options
        self.error: BaseException | None = None
        self.struck = 0

    def run(self) -> None:
        try:
            started = time.monotonic()
            for fault in self.faults:
                due = started + fault.at
                if due > time.monotonic():
                    time.sleep(due - time.monotonic())  # the random moment of the fault
                if fault.kind == "kill":
                    assert fault.service is not None
                    self._kill(fault.service, fault.down)
                elif fault.kind in ("broker", "crash"):
                    self._restart_broker(fault.down, crash=fault.kind == "crash")
                else:
                    self._wipe(fault.down)
                self.struck += 1
        except BaseException as error:
            self.error = error
            self.journal.note(f"the fault schedule failed: {error!r}")

    def in_flight(self, *names: str) -> str:
        """What was under way: readings sent and recorded, the write in progress, and each
        named service's log head and outbox backlog."""
        parts = [
            f"readings acknowledged {self.stream.sent}/{len(self.stream.readings)}",
            f"recorded {self.stack.recorded_readings()}",
            (
                f"objective change {self.writer.done + 1}: {self.writer.current}"
                if not self.writer.finished.is_set()
                else "objective changes done"
            ),
        ]
        for name in names:
            readiness = self.stack.readiness(name)
            if readiness:
                parts.append(
                    f"{name} log {readiness['log_position']}, outbox backlog "
                    f"{readiness['outbox_backlog']}"
                )
        return "; ".join(parts)

    def _kill(self, name: str, down: float) -> None:
        flight = self.in_flight(name)
        self.stack.kill(name)
        self.journal.note(f"SIGKILL {name} ({flight})")
        time.sleep(down)  # the outage: a fault's length, not a synchronisation
        self._restart(name)

    def _restart(self, name: str) -> None:
        began = time.monotonic()
        self.stack.restart(name)
        readiness = self.stack.readiness(name) or {}
        self.journal.note(
            f"restarted {name}: ready in {time.monotonic() - began:.1f}s, log "
            f"{readiness.get('log_position')}, outbox backlog {readiness.get('outbox_backlog')}"
        )

    def _restart_broker(self, down: float, crash: bool) -> None:
        # A crashed broker may lose what it acknowledged but had not yet written: the source
        # then sends its readings again, so hold the stream to know exactly which were
        # acknowledged. A graceful stop keeps everything.
        acknowledged = self._hold_stream() if crash else 0
        flight = self.in_flight(*SERVICES)
        self.stack.stop_broker(graceful=not crash)
        self.journal.note(
            f"broker {'crashes (SIGKILL)' if crash else 'stops'}; services stay up ({flight})"
        )
        time.sleep(down)
        self.stack.start_broker()
        self.journal.note(f"broker back after {down:.1f}s down; the services reconnect")
        if crash:
            self._resend(acknowledged)

    def _hold_stream(self) -> int:
        """Hold the reading stream; returns how many readings the broker acknowledged."""
        # A park left from the last hold is no answer to this one: the stream may not have
        # woken from it yet, and would then send a chunk the caller does not count (a wipe
        # right after a crash's resend lost such a chunk without the source sending it again).
        self.stream.parked.clear()
        self.stream.may_send.clear()
        wait_for(
            lambda: self.stream.parked.is_set() or self.stream.finished.is_set(),
            within=60,
            what="the reading stream to hold",
        )
        return self.stream.sent

    def _resend(self, acknowledged: int) -> None:
        """The source sends again what Kafka may have lost, and goes on streaming."""
        resend(self.stack.bootstrap, self.stream.readings[:acknowledged])
        self.journal.note(f"the source sent again the {acknowledged} readings Kafka may have lost")
        self.stream.may_send.set()

    def _wipe(self, down: float) -> None:
        acknowledged = self._hold_stream()
        flight = self.in_flight(*SERVICES)
        self.stack.stop_broker(graceful=False)
        if self.options.restart_after_wipe:
            for name in SERVICES:
                self.stack.kill(name)
        self.stack.wipe_broker_data()
        self.journal.note(
            "broker killed and its data directory deleted"
            + ("; services SIGKILLed" if self.options.restart_after_wipe else "")
            + f" ({flight})"
        )
        time.sleep(down)
        created = self.stack.start_broker()
        self.journal.note(f"empty broker up, {len(created)} topics created again")
        self._resend(acknowledged)
        if self.options.restart_after_wipe:
            # Together, as an orchestrator brings back what it lost.
            failures: list[BaseException] = []

            def restart(name: str) -> None:
                try:
                    self._restart(name)
                except BaseException as error:
                    failures.append(error)

            restarts = [threading.Thread(target=restart, args=(name,)) for name in SERVICES]
            for thread in restarts:
                thread.start()
            for thread in restarts:
                thread.join()
            if failures:
                raise failures[0]


def run(options: Options, journal: Journal | None = None) -> Journal:
    """One fault run; the journal holds the report, ``journal.passed`` the verdict."""
    journal = journal or Journal()
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # outages are expected here
    rng = random.Random(options.seed)
    readings = make_readings(options.readings, options.duplicates, rng)
    faults = plan_faults(options, rng)
    work_dir = Path(tempfile.mkdtemp(prefix="okr-faults-", dir=options.work_dir))
    unique = len({(r.kpi, r.reading_id) for r in readings})
    journal.heading(
        f"Fault run, seed {options.seed}: {len(readings)} readings ({unique} unique) on "
        f"{len(KPIS)} KPIs at {options.rate:.0f}/s, {options.objective_changes} objective "
        f"changes, kills: {options.kills}, broker restarts: {options.broker_restarts}, "
        f"broker crashes: {options.broker_crashes}"
        f"{', 1 wipe' if options.wipe else ''}; work directory {work_dir}"
    )
    for fault in faults:
        journal.note(f"planned at t+{fault.at:.1f}s of the stream: {fault.describe()}")
    stack = Stack(work_dir)
    try:
        journal.heading("What it did")
        stack.start()
        journal.note(
            f"stack up: broker {stack.bootstrap}, "
            + ", ".join(f"{name} {service.url}" for name, service in stack.services.items())
        )
        for key, definition in KPIS.items():
            stack.api("metrics").request("PUT", f"/kpis/{key}", definition).raise_for_status()
        stream = ReadingStream(stack, readings, options.rate)
        writer = ObjectiveWriter(
            stack,
            journal,
            options.objective_changes,
            options.duration,
            random.Random(options.seed + 1),
        )
        schedule = FaultSchedule(stack, journal, faults, stream, writer, options)
        journal.note("streaming readings and objective changes")
        for worker in (stream, writer, schedule):
            worker.start()
        for worker in (stream, writer, schedule):
            worker.join()
        journal.note(
            f"load done: {stream.sent} readings acknowledged ({stream.resent} sent again after "
            f"{stream.failures} failed sends), {writer.done} objective changes "
            f"(answers lost: {len(writer.lost)}), faults struck: {schedule.struck}"
        )
        errors = {
            name: worker.error
            for name, worker in (("stream", stream), ("writer", writer), ("schedule", schedule))
            if worker.error is not None
        }
        journal.heading("What it found")
        journal.found(
            Finding(
                "the load and the faults ran to the end",
                passed=not errors and schedule.struck == len(faults),
                expected=f"{len(faults)} faults struck, no driver error",
                found=f"{schedule.struck} struck; errors: {errors or 'none'}",
            )
        )
        journal.found(
            Finding(
                "every objective change answered as expected or lost in a fault",
                passed=not writer.anomalies,
                expected="201/200 answers, lost answers resolved to the state before or asked",
                found=f"{len(writer.anomalies)} unexpected answers, {len(writer.lost)} lost",
                evidence=writer.anomalies,
            )
        )
        began = time.monotonic()
        try:
            wait_for(stack.settled, within=options.settle_within, what="the system to settle")
            settled = Finding(
                "the system settles",
                passed=True,
                expected=f"within {options.settle_within:.0f}s",
                found=f"consumers at the end of their topics, outboxes empty after "
                f"{time.monotonic() - began:.1f}s",
            )
        except TimeoutError:
            settled = Finding(
                "the system settles",
                passed=False,
                expected=f"within {options.settle_within:.0f}s",
                found="still unsettled",
                evidence=stack.unsettled()
                + [error for name in SERVICES for error in stack.log_errors(name)],
            )
        journal.found(settled)
        plans = [plan for plan in writer.plans if plan.objective_id is not None]
        verdicts: list[tuple[str, Callable[[], Finding]]] = [
            (checks.READINGS_STORED, lambda: checks.readings_in_store(stack, readings)),
            (checks.READINGS_PUBLISHED, lambda: checks.readings_published(stack, readings)),
            (checks.OBJECTIVES_IN_GOAL, lambda: checks.objectives_in_goal(stack, plans)),
            (
                checks.OBJECTIVES_IN_ALIGNMENT,
                lambda: checks.objectives_in_alignment(stack, plans),
            ),
            (checks.SCORES_REPLAYED, lambda: checks.scores_equal_replay(stack, work_dir)),
            (
                checks.SCORES_COMPUTED,
                lambda: checks.scores_equal_arithmetic(stack, plans, readings),
            ),
            (checks.NOTHING_DEAD_LETTERED, lambda: checks.nothing_dead_lettered(stack)),
        ]
        for name, check in verdicts:
            try:
                journal.found(check())
            except Exception as error:  # a check that cannot look fails, and says why
                journal.found(Finding(name, False, "the check to run", repr(error)))
    finally:
        stack.stop()
    verdict = "passed" if journal.passed else "FAILED"
    failed = sum(not finding.passed for finding in journal.findings)
    journal.heading(
        f"Fault run {verdict}: {len(journal.findings) - failed} of {len(journal.findings)} "
        f"checks passed (seed {options.seed}; replay with --seed {options.seed})"
    )
    if journal.passed:
        shutil.rmtree(work_dir, ignore_errors=True)
    else:
        journal.heading(f"Logs and stores kept in {work_dir}")
    return journal


app = typer.Typer(add_completion=False)


@app.command()
def main(
    readings: Annotated[int, typer.Option(help="Messages sent to kpi.readings.")] = 30_000,
    objective_changes: Annotated[
        int, typer.Option(help="Creates, redefinitions, check-ins, archivals.")
    ] = 300,
    kills: Annotated[int, typer.Option(help="SIGKILLs of random services.")] = 8,
    broker_restarts: Annotated[
        int, typer.Option(help="Graceful stops of the broker, each followed by a start.")
    ] = 2,
    wipe: Annotated[
        bool, typer.Option(help="Once, delete the broker's data while it is down.")
    ] = True,
    seed: Annotated[int | None, typer.Option(help="Replays a run (default: a new one).")] = None,
    rate: Annotated[float, typer.Option(help="Readings per second.")] = 300.0,
    duplicates: Annotated[float, typer.Option(help="Share of messages resent.")] = 0.05,
    broker_crashes: Annotated[
        int, typer.Option(help="SIGKILLs of the broker, each followed by a start.")
    ] = 1,
    restart_after_wipe: Annotated[
        bool, typer.Option(help="Also restart the services after the wipe.")
    ] = False,
    settle_within: Annotated[
        float, typer.Option(help="Seconds the system may take to settle.")
    ] = 300.0,
) -> None:
    """Run the fault suite; exits 1 when a check fails."""
    options = Options(
        readings=readings,
        objective_changes=objective_changes,
        kills=kills,
        broker_restarts=broker_restarts,
        wipe=wipe,
        seed=seed if seed is not None else random.SystemRandom().randrange(1_000_000),
        rate=rate,
        duplicates=duplicates,
        broker_crashes=broker_crashes,
        restart_after_wipe=restart_after_wipe,
        settle_within=settle_within,
    )
    try:
        kafka_jars()
    except BrokerUnavailable as missing:
        raise SystemExit(str(missing)) from None
    if not run(options).passed:
        raise typer.Exit(1)
