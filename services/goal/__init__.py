"""The goal service: objectives, key results and check-ins (port 8001, topic goal.events)."""
