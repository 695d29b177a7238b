# One image for every service; the command picks the service (python -m services.<name>).
FROM python:3.11.7-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY contracts contracts
COPY services services
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11.7-slim-bookworm
RUN useradd --create-home --uid 10001 okr && mkdir /data && chown okr /data
COPY --from=build /install /usr/local
USER okr
WORKDIR /home/okr
ENV OKR_DATA_DIR=/data \
    OKR_HTTP_HOST=0.0.0.0 \
    PYTHONUNBUFFERED=1
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('OKR_HTTP_PORT', '8001') + '/healthz', timeout=2)"
CMD ["python", "-m", "services.goal"]
