"""The alignment service: alignment graph, live scores and gaps (port 8003, alignment.events)."""
