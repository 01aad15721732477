#!/usr/bin/env bash
# Build a Python base image without any container registry: debootstrap a Debian minbase with
# python3 + venv + pip, trust the host's CA bundle (TLS-intercepting proxies), trim it, and
# `docker import` it. Idempotent: an image whose stamp matches the host's CA bundle is kept.
#
#   docker/build-base-image.sh [TAG]        default TAG: envkit-base:$SUITE
#
# Environment: ENVKIT_BASE_SUITE (bookworm: Python 3.11; trixie: 3.13; bullseye: 3.9),
# ENVKIT_BASE_MIRROR (a Debian mirror URL; default: debootstrap's), ENVKIT_BASE_REBUILD=1.
# Use the image with `envkit build-docker --base-image TAG` or ENVKIT_DOCKER_BASE_IMAGE=TAG.
# Never ship the image to another machine: it trusts this machine's CA bundle.
set -euo pipefail

SUITE="${ENVKIT_BASE_SUITE:-bookworm}"
TAG="${1:-envkit-base:${SUITE}}"
MIRROR="${ENVKIT_BASE_MIRROR:-}"
HOST_BUNDLE=/etc/ssl/certs/ca-certificates.crt

log() { echo "build-base-image: $*" >&2; }

command -v docker >/dev/null || { log "docker is not installed"; exit 3; }
command -v debootstrap >/dev/null || { log "debootstrap is not installed (apt-get install debootstrap)"; exit 3; }
docker info >/dev/null 2>&1 || { log "the Docker engine is not reachable (is dockerd running?)"; exit 3; }

stamp="none"
if [ -r "$HOST_BUNDLE" ]; then
    stamp="$(sha256sum "$HOST_BUNDLE" | cut -c1-16)"
fi
if [ "${ENVKIT_BASE_REBUILD:-0}" != 1 ]; then
    current="$(docker image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$TAG" 2>/dev/null \
        | sed -n 's/^ENVKIT_HOST_CA=//p' || true)"
    if [ -n "$current" ] && [ "$current" = "$stamp" ]; then
        log "$TAG is up to date (host CA stamp $stamp)"
        exit 0
    fi
    [ -n "$current" ] && log "$TAG trusts another CA bundle ($current, host has $stamp): rebuilding"
fi

work="$(mktemp -d /var/tmp/envkit-base.XXXXXX)"
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
rootfs="$work/rootfs"

# debootstrap does not retry downloads: retry the whole step.
ok=0
for attempt in 1 2 3; do
    rm -rf "$rootfs"
    mkdir -p "$rootfs"
    log "debootstrap $SUITE (attempt $attempt)"
    # shellcheck disable=SC2086
    if debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
        "$SUITE" "$rootfs" $MIRROR >"$work/debootstrap.log" 2>&1; then
        ok=1
        break
    fi
    tail -n 5 "$work/debootstrap.log" >&2 || true
    sleep $((attempt * 5))
done
[ "$ok" = 1 ] || { log "debootstrap failed 3 times"; exit 3; }

# Trust what the host trusts (a proxy's CA is added at boot on these machines).
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    mkdir -p "$rootfs/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
    chroot "$rootfs" update-ca-certificates >/dev/null 2>&1 || cp "$HOST_BUNDLE" "$rootfs/etc/ssl/certs/ca-certificates.crt"
elif [ -r "$HOST_BUNDLE" ]; then
    cp "$HOST_BUNDLE" "$rootfs/etc/ssl/certs/ca-certificates.crt"
fi

# Trim: apt lists and caches, docs, man pages, locales.
chroot "$rootfs" apt-get clean >/dev/null 2>&1 || true
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
    "$rootfs"/var/log/*.log "$rootfs"/var/cache/debconf/*-old
find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} + 2>/dev/null || true

bundle=/etc/ssl/certs/ca-certificates.crt
log "docker import -> $TAG"
tar --numeric-owner -C "$rootfs" -c . | docker import \
    -c "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    -c "ENV LANG=C.UTF-8" \
    -c "ENV SSL_CERT_FILE=$bundle" \
    -c "ENV PIP_CERT=$bundle" \
    -c "ENV REQUESTS_CA_BUNDLE=$bundle" \
    -c "ENV ENVKIT_HOST_CA=$stamp" \
    -c "LABEL org.envkit.base-image=debootstrap-$SUITE" \
    -c 'CMD ["python3"]' \
    - "$TAG" >/dev/null

docker run --rm --network none "$TAG" python3 -c 'import ssl, venv, sys; print("python", sys.version.split()[0])' >&2
log "built $TAG ($(docker image inspect --format '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1/1e6}'))"
