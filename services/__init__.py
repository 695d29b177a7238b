"""The OKR platform's services: goal, metrics and alignment, plus their shared plumbing."""
