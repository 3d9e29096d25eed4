#!/usr/bin/env bash
# One-time, idempotent setup of rootful podman for building and running the CPU image on a
# machine that cannot reach Docker Hub (what tests/test_docker.py runs first; seconds when done).
#
#   docker/podman_setup.sh            (as root)
#
# 1. apt-get install podman runc debootstrap, if missing.
# 2. /etc/containers/containers.conf: host network (no slirp/CNI in the sandbox), runc (crun
#    refuses the sandbox's hybrid cgroups), ulimits no higher than the sandbox allows.
# 3. The base image the Dockerfile names, debian:bookworm, made with `debootstrap --variant=minbase`
#    and `podman import`, with the host's CA certificates inside so pip reaches its index through
#    the machine's proxy. The root file system is cached as a tarball in $FETAL_PODMAN_CACHE
#    (default /var/cache/fetal-biometry), so a removed image is re-imported in seconds.
set -euo pipefail

cache=${FETAL_PODMAN_CACHE:-/var/cache/fetal-biometry}
base=debian:bookworm
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
conf=/etc/containers/containers.conf
marker="# written by fetal-biometry docker/podman_setup.sh"

say() { echo "podman_setup: $*" >&2; }
die() { echo "podman_setup: error: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (rootful podman); try: sudo $0"

missing=()
for tool in podman runc debootstrap; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them"
  say "installing ${missing[*]} (about a minute)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap; } \
    >/dev/null || die "apt-get install podman runc debootstrap failed; run it yourself to see why"
fi

want="$marker
[containers]
netns = \"host\"
default_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]

[engine]
runtime = \"runc\""
if [ ! -f "$conf" ] || ! cmp -s <(echo "$want") "$conf"; then
  if [ -f "$conf" ] && ! grep -qF "$marker" "$conf"; then
    die "$conf exists and was not written by this script; merge these settings into it by hand:
$want"
  fi
  mkdir -p "$(dirname "$conf")"
  echo "$want" > "$conf"
  say "wrote $conf"
fi

if podman image exists "$base"; then
  say "ready: $(podman info --format '{{.Store.GraphDriverName}} storage, {{.Host.OCIRuntime.Name}}'), base image $base present"
  exit 0
fi

tarball="$cache/debian-bookworm-minbase.tar"
if [ ! -s "$tarball" ]; then
  say "making $base with debootstrap from $mirror (about a minute)"
  mkdir -p "$cache"
  rootfs=$(mktemp -d "$cache/rootfs.XXXXXX")
  trap 'rm -rf "$rootfs"' EXIT
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" > "$cache/debootstrap.log" 2>&1 \
    || { tail -20 "$cache/debootstrap.log" >&2; die "debootstrap failed (no route to $mirror?)"; }
  # The machine's proxy re-signs TLS with its own CA: copy the host's bundle in, both as the
  # system bundle and as a local CA that update-ca-certificates keeps when the image installs
  # the ca-certificates package.
  bundle=/etc/ssl/certs/ca-certificates.crt
  [ -s "$bundle" ] || die "$bundle missing on the host (apt-get install ca-certificates)"
  mkdir -p "$rootfs/etc/ssl/certs" "$rootfs/usr/local/share/ca-certificates"
  cp "$bundle" "$rootfs/etc/ssl/certs/ca-certificates.crt"
  cp "$bundle" "$rootfs/usr/local/share/ca-certificates/host-bundle.crt"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
fi
say "importing $tarball as $base"
# pip uses its own CA list unless told otherwise; these ENV lines point it (and requests,
# OpenSSL) at the bundle with the proxy's CA. They are part of this local base image only.
podman import -q \
  --change "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt" \
  --change "ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" \
  --change "ENV REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt" \
  --change "CMD [\"/bin/bash\"]" \
  "$tarball" "$base" >/dev/null || die "podman import failed"
podman image exists "$base" || die "podman import did not produce $base"
say "ready: base image $base imported"
