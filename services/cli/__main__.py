"""``python -m services.cli`` runs the ``okr`` tool, for a checkout where the console script
is not installed."""

from __future__ import annotations

from services.cli import app

if __name__ == "__main__":
    app(prog_name="okr")
