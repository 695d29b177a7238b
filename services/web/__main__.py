"""Run the web console: ``python -m services.web`` (settings from the environment)."""

from __future__ import annotations

import logging

import uvicorn

from services.shared.settings import Settings
from services.web.app import create_app
from services.web.settings import WebSettings


def main() -> None:
    settings = WebSettings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s web %(levelname)s %(message)s")
    # One line per call to a service is noise beside uvicorn's own access log.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    uvicorn.run(
        create_app(settings, Settings()),
        host=settings.http_host,
        port=settings.port,
        log_level="info",
    )


if __name__ == "__main__":
    main()
