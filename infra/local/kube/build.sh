#!/usr/bin/env bash
# Builds the local Kubernetes control plane (issue 14) from the Go module proxy into the user cache, one folder per
# component and version: $CACHE/kube/<name>-<version>/. A component is rebuilt only when its version changes.
# Cold: about 9.5 min on 2 cores (measured: etcd 50 s, kubernetes 262 s, kwok 80 s, karpenter 97 s, kuberay 82 s), with
# ~7 GB of Go caches in a temp dir, deleted afterwards (446 MB of binaries and data stay); warm: a second.
set -euo pipefail
CACHE="${AGENTIC_CACHE:-$HOME/.cache/agentic}"
ROOT="$CACHE/kube"
K8S_VERSION=v1.34.2
ETCD_VERSION=v3.6.4
KWOK_VERSION=v0.8.0
KARPENTER_VERSION=v1.14.1
KUBERAY_VERSION=v1.5.0
export GOFLAGS="${GOFLAGS:--buildvcs=false} -trimpath"
export CGO_ENABLED=0
mkdir -p "$ROOT"
WORK=$(mktemp -d)
# The Go build and module caches grow to ~7 GB and are worth nothing once the binaries are cached: they live in the
# build's temp dir and go with it, unless AGENTIC_GO_KEEP_CACHES=1 (then Go's own defaults, reused across builds).
if [ "${AGENTIC_GO_KEEP_CACHES:-0}" != 1 ]; then
  export GOCACHE="$WORK/go-build" GOMODCACHE="$WORK/go-mod"
fi
cleanup() {
  if [ "${AGENTIC_GO_KEEP_CACHES:-0}" != 1 ] && [ -d "$WORK/go-mod" ]; then
    chmod -R u+w "$WORK/go-mod" 2>/dev/null || true  # the module cache is read-only by design
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

done_or_build() {  # name version fn
  local dir="$ROOT/$1-$2"
  if [ -f "$dir/.done" ]; then return 0; fi
  echo "kube: building $1 $2 (cached in $dir)"
  local t0=$SECONDS
  rm -rf "$dir" && mkdir -p "$dir"
  "$3" "$dir"
  touch "$dir/.done"
  echo "kube: $1 $2 built in $((SECONDS - t0)) s"
}

modpath() {  # module@version -> its directory in the module cache
  go mod download -json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])'
}

build_kubernetes() {
  # k8s.io/kubernetes replaces its staging modules with ./staging/..., which the module zip lacks: a wrapper module
  # requires it and replaces each staging module with its published v0.x twin.
  local out=$1 src minor=${K8S_VERSION#v1.}
  minor=${minor%%.*}
  src=$(modpath "k8s.io/kubernetes@$K8S_VERSION")
  local w="$WORK/kubernetes"
  mkdir -p "$w"
  {
    echo "module agentic.local/kubernetes"
    echo
    grep -m1 '^go ' "$src/go.mod"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging/src/k8s\.io/[a-z0-9-]+' "$src/go.mod" \
      | awk -v v="v0.${minor}.${K8S_VERSION##*.}" '{print "\t" $1 " => " $1 " " v}'
    echo ")"
  } >"$w/go.mod"
  local name
  for name in kube-apiserver kube-controller-manager kube-scheduler; do
    mkdir -p "$w/$name"
    cp "$src"/cmd/$name/*.go "$w/$name/"
    chmod u+w "$w/$name"/*.go
    rm -f "$w/$name"/*_test.go
  done
  (cd "$w" && go mod tidy >/dev/null)
  local pkg=k8s.io/component-base/version
  local ldf="-s -w -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldf="$ldf -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  ldf="$ldf -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
  for name in kube-apiserver kube-controller-manager kube-scheduler; do
    (cd "$w" && go build -ldflags "$ldf" -o "$out/$name" "./$name")
  done
}

build_etcd() {
  # etcd's go.mod replaces its sibling modules with paths: a wrapper calls etcdmain.Main.
  local out=$1 w="$WORK/etcd"
  mkdir -p "$w"
  cat >"$w/main.go" <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  cat >"$w/go.mod" <<MOD
module agentic.local/etcd

go 1.24

require (
	go.etcd.io/etcd/api/v3 $ETCD_VERSION
	go.etcd.io/etcd/client/pkg/v3 $ETCD_VERSION
	go.etcd.io/etcd/client/v3 $ETCD_VERSION
	go.etcd.io/etcd/pkg/v3 $ETCD_VERSION
	go.etcd.io/etcd/server/v3 $ETCD_VERSION
)
MOD
  (cd "$w" && go mod tidy >/dev/null && go build -ldflags "-s -w" -o "$out/etcd" .)
}

build_kwok() {
  local out=$1 src
  GOBIN="$out" go install -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  # The bare binary has no stages: keep the module's own stage files next to it.
  src=$(modpath "sigs.k8s.io/kwok@$KWOK_VERSION")
  mkdir -p "$out/stage"
  cp -r "$src/kustomize/stage/." "$out/stage/"
  chmod -R u+w "$out/stage"
}

build_karpenter() {
  # Karpenter binds its metrics and health ports on all interfaces (":%d") with no flag to change it: build the kwok
  # provider from a copy of the module with those two listeners on 127.0.0.1 (the only change; checked below).
  local out=$1 src w="$WORK/karpenter"
  src=$(modpath "sigs.k8s.io/karpenter@$KARPENTER_VERSION")
  cp -r "$src" "$w" && chmod -R u+w "$w"
  sed -i 's/fmt.Sprintf(":%d", options.FromContext(ctx).\(MetricsPort\|HealthProbePort\))/fmt.Sprintf("127.0.0.1:%d", options.FromContext(ctx).\1)/' \
    "$w/pkg/operator/operator.go"
  [ "$(grep -c '"127.0.0.1:%d"' "$w/pkg/operator/operator.go")" = 2 ] || { echo "kube: karpenter listener patch did not apply"; exit 1; }
  (cd "$w" && go build -ldflags "-s -w -X sigs.k8s.io/karpenter/pkg/operator.Version=$KARPENTER_VERSION" -o "$out/karpenter-kwok" ./kwok)
  # Karpenter-kwok's own CRDs (NodeOverlay, CapacityBuffer, KWOKNodeClass; NodePool/NodeClaim of this core version).
  mkdir -p "$out/crds"
  cp "$src"/pkg/apis/crds/*.yaml "$src"/kwok/apis/crds/*.yaml "$out/crds/"
  chmod -R u+w "$out"
}

build_kuberay() {
  local out=$1
  GOBIN="$out" go install -ldflags "-s -w" "github.com/ray-project/kuberay/ray-operator@$KUBERAY_VERSION"
}

only="${1:-all}"
t0=$SECONDS
for c in etcd kubernetes kwok karpenter kuberay; do
  if [ "$only" != all ] && [ "$only" != "$c" ]; then continue; fi
  case $c in
    etcd) done_or_build etcd "$ETCD_VERSION" build_etcd ;;
    kubernetes) done_or_build kubernetes "$K8S_VERSION" build_kubernetes ;;
    kwok) done_or_build kwok "$KWOK_VERSION" build_kwok ;;
    karpenter) done_or_build karpenter "$KARPENTER_VERSION" build_karpenter ;;
    kuberay) done_or_build kuberay "$KUBERAY_VERSION" build_kuberay ;;
  esac
done
[ $((SECONDS - t0)) -lt 2 ] || echo "kube: ready in $ROOT ($((SECONDS - t0)) s)"
