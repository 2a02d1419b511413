#!/usr/bin/env bash
# Builds a real local Kubernetes control plane from the Go module proxy, once, into the cache:
#   kube-apiserver, kube-controller-manager, kube-scheduler  (deps/go/kubernetes: k8s.io/kubernetes + pinned staging)
#   etcd                                                     (deps/go/etcd: go.etcd.io/etcd/server/v3)
#   kwok, helm                                               (go install pkg@version: their go.mod has no replace)
# A binary that is present and whose --version matches the pinned version is reused, so a warm run takes seconds.
# Binaries are built under a temporary name and renamed into place; one line per binary is printed:
#   NAME  built|reused  SECONDS  SIZE  VERSION
# and $TIDESCALE_CACHE/bin/VERSIONS lists "name version".
#
# Environment: TIDESCALE_CACHE (default $HOME/.cache/tidescale); binaries go to $TIDESCALE_CACHE/bin, the Go module
# cache to $TIDESCALE_CACHE/go/mod, the Go build cache to $TIDESCALE_CACHE/go/build. GOPROXY and GOTOOLCHAIN are
# honoured (Go >= 1.26.0 is required). BUILD_JOBS (default 2) is passed to `go build -p`.
# Versions: k8s and etcd from the go.mod files under deps/go/; KWOK and helm below.
set -euo pipefail

KWOK_VERSION=v0.8.0
HELM_VERSION=v3.22.0
HELM_MODULE=helm.sh/helm/v3

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TIDESCALE_CACHE=${TIDESCALE_CACHE:-$HOME/.cache/tidescale}
BIN=$TIDESCALE_CACHE/bin
JOBS=${BUILD_JOBS:-2}

export GOMODCACHE=$TIDESCALE_CACHE/go/mod
export GOCACHE=$TIDESCALE_CACHE/go/build
export CGO_ENABLED=0
# readonly: build exactly what the committed go.mod/go.sum say and never rewrite them.
export GOFLAGS="-mod=readonly -buildvcs=false"

command -v go >/dev/null || { echo "build-kubernetes: 'go' (>= 1.26.0) is not on PATH" >&2; exit 1; }
mkdir -p "$BIN" "$GOMODCACHE" "$GOCACHE"

# One build at a time per cache; a second caller waits and then reuses what the first built.
exec 9>"$BIN/.lock"
flock 9

WORK=$(mktemp -d "$BIN/.build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# Version a module is pinned to in a wrapper go.mod (no module download needed).
mod_version() {
  (cd "$HERE/go/$1" && go mod edit -json) |
    awk -v p="\"$2\"," '$1 == "\"Path\":" && $2 == p { getline; gsub(/[",]/, "", $2); print $2; exit }'
}

K8S_VERSION=$(mod_version kubernetes k8s.io/kubernetes)
ETCD_VERSION=$(mod_version etcd go.etcd.io/etcd/server/v3)
[[ $K8S_VERSION =~ ^v([0-9]+)\.([0-9]+)\.[0-9]+$ ]] || { echo "build-kubernetes: bad k8s version '$K8S_VERSION'" >&2; exit 1; }
K8S_MAJOR=${BASH_REMATCH[1]}
K8S_MINOR=${BASH_REMATCH[2]}
[[ -n $ETCD_VERSION ]] || { echo "build-kubernetes: no etcd version in deps/go/etcd/go.mod" >&2; exit 1; }

K8S_BINS=(kube-apiserver kube-controller-manager kube-scheduler)
declare -A WANT=(
  [kube-apiserver]=$K8S_VERSION [kube-controller-manager]=$K8S_VERSION [kube-scheduler]=$K8S_VERSION
  [etcd]=$ETCD_VERSION [kwok]=$KWOK_VERSION [helm]=$HELM_VERSION
)
ORDER=("${K8S_BINS[@]}" etcd kwok helm)

# The version a built binary reports, normalised to vX.Y.Z (empty if it is missing or does not run).
reported_version() {
  local b=$BIN/$1
  [[ -x $b ]] || return 0
  case $1 in
    kube-*) "$b" --version 2>/dev/null | awk '$1 == "Kubernetes" { print $2; exit }' ;;
    etcd) "$b" --version 2>/dev/null | awk '/^etcd Version:/ { print "v" $3; exit }' ;;
    kwok) "$b" --version 2>/dev/null | grep -o 'v\?[0-9]\+\.[0-9]\+\.[0-9]\+' | head -1 | sed 's/^v\?/v/' ;;
    helm) "$b" version --short 2>/dev/null | sed 's/+.*//' ;;
  esac || true
}

declare -A SECS=() STATE=()
report() { # name
  local size
  size=$(du -m "$BIN/$1" | cut -f1)
  printf '%-24s %-7s %5ss %5s MB  %s\n' "$1" "${STATE[$1]}" "${SECS[$1]}" "$size" "$(reported_version "$1")"
}

# Moves freshly built binaries from $WORK into $BIN and checks the version they report.
install_built() { # secs names...
  local secs=$1 n got
  shift
  for n in "$@"; do
    mv -f "$WORK/$n" "$BIN/$n"
    got=$(reported_version "$n")
    if [[ $got != "${WANT[$n]}" ]]; then
      echo "build-kubernetes: built $n reports '$got', expected '${WANT[$n]}'" >&2
      exit 1
    fi
    STATE[$n]=built
    SECS[$n]=$secs
  done
}

needs_build() { [[ $(reported_version "$1") != "${WANT[$1]}" ]]; }

# --- kube-apiserver, kube-controller-manager, kube-scheduler: one go build (shared compile work) ---
todo=()
for n in "${K8S_BINS[@]}"; do
  if needs_build "$n"; then todo+=("$n"); else STATE[$n]=reused; SECS[$n]=0; fi
done
if ((${#todo[@]})); then
  start=$SECONDS
  # Release time of the module as the build date, so rebuilds of one version are identical.
  build_date=$(cd "$HERE/go/kubernetes" &&
    go list -m -f '{{if .Time}}{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}{{end}}' k8s.io/kubernetes)
  build_date=${build_date:-$(date -u +%Y-%m-%dT%H:%M:%SZ)}
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$K8S_MAJOR -X $pkg.gitMinor=$K8S_MINOR"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
  done
  pkgs=()
  for n in "${todo[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$n"); done
  (cd "$HERE/go/kubernetes" && go build -trimpath -p "$JOBS" -ldflags "$ldflags" -o "$WORK/" "${pkgs[@]}")
  install_built $((SECONDS - start)) "${todo[@]}"
fi

# --- etcd: its own wrapper module, so its dependencies do not move the ones kube-apiserver links ---
if needs_build etcd; then
  start=$SECONDS
  (cd "$HERE/go/etcd" && go build -trimpath -p "$JOBS" \
    -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=go-module-$ETCD_VERSION" \
    -o "$WORK/etcd" go.etcd.io/etcd/server/v3)
  install_built $((SECONDS - start)) etcd
else STATE[etcd]=reused; SECS[etcd]=0; fi

# --- kwok and helm: go install pkg@version (module mode outside any main module) ---
go_install() { # name pkg@version ldflags
  (cd "$WORK" && GOFLAGS=-buildvcs=false GOBIN="$WORK" go install -trimpath -p "$JOBS" -ldflags "$3" "$2")
}
if needs_build kwok; then
  start=$SECONDS
  go_install kwok "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "-s -w" # its consts.Version is the release's
  install_built $((SECONDS - start)) kwok
else STATE[kwok]=reused; SECS[kwok]=0; fi

if needs_build helm; then
  start=$SECONDS
  # As helm's Makefile does: the release version, and a Kubernetes version (1.<minor>, ours; helm 3.22's
  # client-go is 1.37 too) as the default capabilities of `helm template` and the deprecation lint (else 1.20).
  hv=$HELM_MODULE/internal/version
  go_install helm "$HELM_MODULE/cmd/helm@$HELM_VERSION" \
    "-s -w -X $hv.version=$HELM_VERSION -X $hv.metadata= -X $hv.gitTreeState=clean \
     -X $HELM_MODULE/pkg/lint/rules.k8sVersionMajor=1 -X $HELM_MODULE/pkg/lint/rules.k8sVersionMinor=$K8S_MINOR \
     -X $HELM_MODULE/pkg/chartutil.k8sVersionMajor=1 -X $HELM_MODULE/pkg/chartutil.k8sVersionMinor=$K8S_MINOR"
  install_built $((SECONDS - start)) helm
else STATE[helm]=reused; SECS[helm]=0; fi

for n in "${ORDER[@]}"; do report "$n"; done
{ for n in "${ORDER[@]}"; do echo "$n ${WANT[$n]}"; done; } >"$WORK/VERSIONS"
mv -f "$WORK/VERSIONS" "$BIN/VERSIONS"
