# One image for the three services and the web console; the command picks the process:
#   python -m services.goal | services.metrics | services.alignment | services.web
# and `python -m services.shared.broker` creates the Kafka topics (the compose topics step).
# The base is pinned to a patch release so that a rebuild gives the same interpreter.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
WORKDIR /src
# The dependencies get a layer of their own (installed with empty packages, then the project
# removed again), so a code change does not download them again.
COPY pyproject.toml ./
RUN mkdir services contracts \
    && touch services/__init__.py contracts/__init__.py \
    && /opt/venv/bin/pip install . \
    && /opt/venv/bin/pip uninstall --yes okr-platform
COPY contracts contracts
COPY services services
RUN /opt/venv/bin/pip install --no-deps . \
    && /opt/venv/bin/python -c "import services.goal, services.metrics, services.alignment, services.web"

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="okr-platform" \
      org.opencontainers.image.description="Event-sourced OKR and KPI services (goal, metrics, alignment) and their web console"
# A fixed numeric uid, so that orchestrators can check runAsNonRoot and volumes can be chowned.
RUN groupadd --system --gid 10001 okr \
    && useradd --system --uid 10001 --gid okr --create-home --home-dir /home/okr okr \
    && mkdir /data && chown okr:okr /data
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    OKR_DATA_DIR=/data \
    OKR_HTTP_HOST=0.0.0.0
USER 10001:10001
WORKDIR /home/okr
# The console's port too: it is served by this image (python -m services.web).
EXPOSE 8000 8001 8002 8003
# Liveness from /healthz on OKR_HTTP_PORT; when it is unset (0: the process's default port)
# every default port is tried, which is safe because a container runs one process.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request\nport = os.environ.get('OKR_HTTP_PORT', '0')\nports = [port] if port not in ('', '0') else ['8000', '8001', '8002', '8003']\ndef alive(p):\n    try:\n        with urllib.request.urlopen(f'http://127.0.0.1:{p}/healthz', timeout=3) as answer:\n            return answer.status == 200\n    except OSError:\n        return False\nsys.exit(0 if any(alive(p) for p in ports) else 1)\n"]
CMD ["python", "-m", "services.goal"]
