# syntax=docker/dockerfile:1
# The bot in a slim image, running as an unprivileged user. Catalogs are compiled to .mo at
# build time (the bot would otherwise compile them in memory at every start).
# PYTHON_IMAGE: any image laid out as python:3.x-slim (Python 3.11+ as `python` and `pip` on
# PATH, installing into /usr/local); tests/image/smoke.sh passes one it builds without a
# registry.
ARG PYTHON_IMAGE=python:3.12-slim

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY db ./db
RUN pip install --no-cache-dir --prefix=/install .

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DATA_DIR=/data \
    HTTP_HOST=0.0.0.0 \
    HTTP_PORT=8080
RUN useradd --create-home --uid 10001 loyalty && mkdir -p /data && chown loyalty /data
COPY --from=build /install /usr/local
WORKDIR /app
COPY --chown=loyalty program.toml alembic.ini ./
COPY --chown=loyalty bot ./bot
COPY --chown=loyalty db ./db
COPY --chown=loyalty locales ./locales
RUN python -c "from pathlib import Path; from babel.messages.pofile import read_po; from babel.messages.mofile import write_mo; [write_mo(open(p.with_suffix('.mo'), 'wb'), read_po(open(p, 'rb'))) for p in Path('locales').glob('*/LC_MESSAGES/messages.po')]"
# By number, so a runtime that must verify a non-root user (Kubernetes' runAsNonRoot) can:
# 10001 is `loyalty`, made above.
USER 10001
EXPOSE 8080
# Exec form, no shell; it asks on HTTP_PORT, so a changed port keeps the check right.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('HTTP_PORT', '8080'); sys.exit(urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4).status != 200)"]
CMD ["python", "-m", "bot"]
