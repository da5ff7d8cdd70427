#!/bin/sh
# Container entrypoint of the TiX time processor (service.md §9.2).
#
#   docker-entrypoint.sh              check the configuration, then exec Celery in the PROCESSOR_TYPE mode:
#                                       STANDALONE (default)  celery -A processor.tasks worker -B ...
#                                       BEAT                  celery -A processor.tasks beat ...
#                                       WORKER                celery -A processor.tasks worker ...
#   docker-entrypoint.sh healthcheck  the image's HEALTHCHECK: pings the local worker node, or, in BEAT mode,
#                                     checks that the beat schedule file was written recently (S12).
#   docker-entrypoint.sh CMD [ARG...] exec CMD unchanged, e.g. to run a tool in the image (S12).
#
# Exit status: 2 when the configuration is invalid (D14; the original exited 0 on an unknown mode);
# otherwise the status of the command exec'd. Every command is exec'd, so SIGTERM reaches Celery itself
# and a warm shutdown happens.

set -eu

#: Exit status of a configuration error (D14), as `python -m processor.config --check` uses it.
EXIT_CONFIG=2

#: Name of the beat schedule file inside CELERY_BEAT_SCHEDULE_DIR [Original].
SCHEDULE_NAME=celerybeat-scheduler

: "${CELERY_BEAT_SCHEDULE_DIR:=/tmp/celerybeat-schedule.d}"
: "${CELERY_LOG_LEVEL:=INFO}"
export CELERY_BEAT_SCHEDULE_DIR CELERY_LOG_LEVEL

schedule_file="${CELERY_BEAT_SCHEDULE_DIR}/${SCHEDULE_NAME}"
processor_type="${PROCESSOR_TYPE:-STANDALONE}"
# S12: the mode is compared case-insensitively.
mode=$(printf '%s' "$processor_type" | tr '[:lower:]' '[:upper:]')

config_error() {
    printf 'configuration error: %s\n' "$1" >&2
    exit "$EXIT_CONFIG"
}

# Celery's -l accepts the level names in any case and FATAL, but not the WARN alias that §1 allows.
celery_log_level() {
    level=$(printf '%s' "$CELERY_LOG_LEVEL" | tr '[:lower:]' '[:upper:]')
    if [ "$level" = WARN ]; then
        level=WARNING
    fi
    printf '%s' "$level"
}

# Newest modification time, in Unix seconds, of the schedule file; the dbm module behind Celery's shelve
# may add a suffix (.db, or .dat/.dir/.bak), so every variant counts. Prints nothing when there is none.
schedule_mtime_s() {
    newest=
    for candidate in "$schedule_file" "$schedule_file".*; do
        [ -f "$candidate" ] || continue
        mtime_s=$(stat -c %Y "$candidate")
        if [ -z "$newest" ] || [ "$mtime_s" -gt "$newest" ]; then
            newest=$mtime_s
        fi
    done
    printf '%s' "$newest"
}

healthcheck() {
    case "$mode" in
        BEAT)
            # S12: the beat writes its schedule file at each fan-out, every P minutes; allow two periods
            # and ten minutes more (2·P·60 + 600 s). The configuration check already rejected a bad P.
            period_min="${TIX_PROCESSING_PERIOD:-10}"
            case "$period_min" in
                '' | *[!0-9]*) period_min=10 ;;
            esac
            max_age_s=$((2 * period_min * 60 + 600))
            mtime_s=$(schedule_mtime_s)
            if [ -z "$mtime_s" ]; then
                echo "unhealthy: no beat schedule file at $schedule_file" >&2
                exit 1
            fi
            age_s=$(($(date +%s) - mtime_s))
            if [ "$age_s" -gt "$max_age_s" ]; then
                echo "unhealthy: beat schedule file $schedule_file is ${age_s} s old (limit ${max_age_s} s)" >&2
                exit 1
            fi
            echo "healthy: beat schedule file is ${age_s} s old (limit ${max_age_s} s)"
            exit 0
            ;;
        *)
            # Ping this container's node only: a broadcast would succeed if any node answered. The node is
            # named after gethostname(), which `uname -n` prints (in a container, the same as $HOSTNAME).
            exec celery -A processor.tasks inspect ping -d "celery@$(uname -n)" --timeout 10
            ;;
    esac
}

if [ "$#" -eq 1 ] && [ "$1" = healthcheck ]; then
    healthcheck
fi

# S12: a container started with arguments runs them unchanged.
if [ "$#" -gt 0 ]; then
    exec "$@"
fi

# D14: every rule of §1 for the selected mode; problems go to stderr and end with status 2.
python -m processor.config --check || exit $?

set -- celery -A processor.tasks
case "$mode" in
    STANDALONE)
        mkdir -p "$CELERY_BEAT_SCHEDULE_DIR"
        started='Standalone processor started'
        set -- "$@" worker -B -s "$schedule_file" -l "$(celery_log_level)"
        ;;
    BEAT)
        mkdir -p "$CELERY_BEAT_SCHEDULE_DIR"
        started='Beat processor started'
        # §4: an empty --pidfile= writes no pid file, so a restarted container never finds a stale one.
        set -- "$@" beat -s "$schedule_file" -l "$(celery_log_level)" --pidfile=
        ;;
    WORKER)
        started='Worker processor started'
        set -- "$@" worker -l "$(celery_log_level)"
        ;;
    *)
        # The configuration check reports this first; repeated here so that no unknown mode ever starts.
        config_error "PROCESSOR_TYPE: unknown processor type '$processor_type' (expected STANDALONE, BEAT or WORKER)"
        ;;
esac

# S12: TIX_WORKER_CONCURRENCY sets the number of worker processes of the modes that run a worker.
if [ "$mode" != BEAT ] && [ -n "${TIX_WORKER_CONCURRENCY:-}" ]; then
    set -- "$@" -c "$TIX_WORKER_CONCURRENCY"
fi

echo "$started"
exec "$@"
