# complaintbot: a small image that runs as a non-root user.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY commands ./commands
COPY models ./models
COPY schedulers ./schedulers
COPY webhooks ./webhooks
# The project alone: its dependencies come from the lock file, by hash.
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
# A font with Chinese glyphs for the report charts (`complaintbot check` fails without one).
RUN apt-get update \
 && apt-get install -y --no-install-recommends fonts-wqy-microhei \
 && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 10001 complaintbot
# Exactly the releases of requirements.lock (pip-compile --generate-hashes), each
# checked against its hash; regenerate it when pyproject.toml's dependencies change.
COPY requirements.lock /tmp/requirements.lock
RUN pip install --no-cache-dir --require-hashes -r /tmp/requirements.lock \
 && rm /tmp/requirements.lock
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-deps /wheels/*.whl && rm -rf /wheels
COPY examples /app/examples
WORKDIR /app
# data/attachments exists in the image so a volume mounted there is the user's.
RUN mkdir -p /app/data/attachments && chown -R complaintbot /app/data
USER complaintbot
ENV HTTP_HOST=0.0.0.0 \
    HTTP_PORT=8080 \
    DATABASE_URL=sqlite://data/complaintbot.sqlite3 \
    LOG_FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)" || exit 1
CMD ["complaintbot", "serve"]
