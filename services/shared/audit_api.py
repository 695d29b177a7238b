"""``GET /audit/verify``, which every service answers: the hash chain of its log (``audit``)
recomputed, and its end compared with the head its outbox relay published on
``audit.heads``."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiokafka.errors import KafkaError
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from contracts.topics import AUDIT_HEADS
from services.shared.audit import verify
from services.shared.broker import read_partitions
from services.shared.http import ErrorMessage
from services.shared.runtime import Runtime

#: How long ``/audit/verify`` waits for Kafka before answering 503.
VERIFY_KAFKA_SECONDS = 15.0
#: Every service publishes a head per relayed batch: a producer's latest is among the last
#: records of the topic.
HEADS_WINDOW = 1000

router = APIRouter()


async def published_head(
    client_options: dict[str, Any], producer: str, window: int = HEADS_WINDOW
) -> tuple[int, str] | None:
    """The latest chain head ``producer`` published on ``audit.heads`` (among its last
    ``window`` records)."""
    latest: tuple[int, str] | None = None
    partitions = await read_partitions(client_options, AUDIT_HEADS, last=window)
    for records in partitions.values():
        for record in records:
            head = json.loads(record.value)
            if head["producer"] == producer and (latest is None or head["position"] >= latest[0]):
                latest = (head["position"], head["hash"])
    return latest


@router.get(
    "/audit/verify",
    tags=["audit"],
    summary="Verify the tamper-evident log",
    responses={503: {"model": ErrorMessage, "description": "Kafka unreachable"}},
)
async def audit_verify(runtime: Runtime) -> Any:
    """Recompute the hash chain over the whole event log, and compare its end with the
    head published on audit.heads: ``ok``, or the first broken position and why."""
    try:
        head = await asyncio.wait_for(
            published_head(runtime.settings.kafka_client_options(), runtime.application.name),
            VERIFY_KAFKA_SECONDS,
        )
    except (KafkaError, OSError, TimeoutError) as error:
        # Without the published head a truncated log would pass: no verdict rather than
        # a half one.
        detail = f"cannot read {AUDIT_HEADS} from Kafka ({type(error).__name__}); retry later"
        return JSONResponse({"detail": detail}, status_code=503)
    recorder = runtime.application.tracking_recorder
    verdict = await asyncio.to_thread(lambda: verify(recorder.select_links(), head))
    return verdict.as_dict() | {
        "service": runtime.settings.service,
        "published_head": {"position": head[0], "hash": head[1]} if head else None,
    }
