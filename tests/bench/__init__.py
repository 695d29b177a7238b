"""``make bench``: throughput and memory figures, printed as a table (never asserted)."""
