"""The metrics service: KPI catalogue and reading ingestion (port 8002, topic metrics.events)."""
