# syntax=docker/dockerfile:1
# The bot in a slim image, running as an unprivileged user. Catalogs are compiled to .mo at
# build time (the bot would otherwise compile them in memory at every start).
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY db ./db
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.12-slim
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
USER loyalty
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status != 200)"
CMD ["python", "-m", "bot"]
