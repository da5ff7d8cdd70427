# TiX time processor: the Celery worker, beat or both (service.md §9–§10).
#
#   docker build -t tix-time-processor .
#   docker run --rm -e PROCESSOR_TYPE=WORKER -v tix-reports:/tmp/reports tix-time-processor
#   docker run --rm tix-time-processor python -m processor --help   # arguments run unchanged (S12)
#
# numpy, scipy and PyWavelets come as binary wheels: no compiler is ever installed.
FROM python:3.11-slim-bookworm

ARG TIX_UID=1000
ARG TIX_GID=1000

ENV PROCESSOR_TYPE=STANDALONE \
    CELERY_BEAT_SCHEDULE_DIR=/tmp/celerybeat-schedule.d \
    CELERY_LOG_LEVEL=INFO \
    TIX_REPORTS_BASE_PATH=/tmp/reports \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The ids must be those that own the condenser's reports, whatever their name in this image: an id the base
# image already has (GID 100 "users", UID 33 "www-data", ...) is reused; only a new one is created as "tix".
RUN if ! getent group "${TIX_GID}" >/dev/null; then groupadd --gid "${TIX_GID}" tix; fi \
    && if ! getent passwd "${TIX_UID}" >/dev/null; then \
        useradd --uid "${TIX_UID}" --gid "${TIX_GID}" --no-create-home --home-dir /app --shell /usr/sbin/nologin tix; \
    fi

WORKDIR /build

# Dependencies first, in their own layer: it survives changes to the code.
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

# .dockerignore lets through only what the package needs (setup.py, README.md, the packages).
COPY . ./
RUN pip install --no-cache-dir --no-deps . \
    && install -d -o root -g root /app \
    && install -d -o "${TIX_UID}" -g "${TIX_GID}" /tmp/reports /tmp/celerybeat-schedule.d \
    && install -m 0755 docker-entrypoint.sh /app/docker-entrypoint.sh \
    && rm -rf /build

WORKDIR /app
USER ${TIX_UID}:${TIX_GID}

VOLUME ["/tmp/reports", "/tmp/celerybeat-schedule.d"]

# WORKER and STANDALONE: `celery inspect ping` of this node; BEAT: age of the schedule file (S12).
HEALTHCHECK --interval=60s --timeout=20s --start-period=60s --retries=3 \
    CMD ["/app/docker-entrypoint.sh", "healthcheck"]

ENTRYPOINT ["/app/docker-entrypoint.sh"]
