"""Plumbing all three services share: settings, the event store, the outbox relay, the
exactly-once consumer, the DLQ, HTTP probes and metrics. Written once, used by each service;
import each piece from its own module."""
