#!/usr/bin/env bash
# Installs what the test suite needs when it is missing: Debian packages
# (redis-server, nginx, wrk, protoc, iproute2 for the fault suite's network
# namespaces) and Go-installed tools (Pebble, the
# ACME CA's test server; versitygw, an S3-compatible server; kustomize;
# staticcheck for `make lint`). Idempotent and
# quiet when everything is present. Tests start these servers themselves on
# free loopback ports.
set -euo pipefail
PEBBLE_VERSION=v2.10.1
VERSITYGW_VERSION=v1.8.0
KUSTOMIZE_VERSION=v5.8.0
VEGETA_VERSION=v12.13.0
STATICCHECK_VERSION=v0.8.2
GOBIN="$(go env GOPATH)/bin"
export GOBIN

need_apt=()
# redis-server also runs the Sentinel tests' sentinels (redis-server
# --sentinel), so the redis-sentinel package is not needed; redis-cli
# (redis-tools, a dependency of redis-server) creates the test clusters.
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v redis-cli >/dev/null || need_apt+=(redis-tools)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need_apt+=(nginx-light)
command -v wrk >/dev/null || need_apt+=(wrk)
command -v protoc >/dev/null || need_apt+=(protobuf-compiler)
command -v ip >/dev/null || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || need_apt+=(iproute2)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "install-test-deps: apt-get install ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -q "${need_apt[@]}" >/dev/null 2>&1 || {
    $SUDO apt-get update -q >/dev/null
    $SUDO apt-get install -y -q "${need_apt[@]}" >/dev/null
  }
fi
[ -x "$GOBIN/pebble" ] || { echo "install-test-deps: go install pebble@$PEBBLE_VERSION"; go install "github.com/letsencrypt/pebble/v2/cmd/pebble@$PEBBLE_VERSION"; }
[ -x "$GOBIN/versitygw" ] || { echo "install-test-deps: go install versitygw@$VERSITYGW_VERSION"; go install "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"; }
[ -x "$GOBIN/kustomize" ] || { echo "install-test-deps: go install kustomize@$KUSTOMIZE_VERSION"; go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"; }
[ -x "$GOBIN/staticcheck" ] || { echo "install-test-deps: go install staticcheck@$STATICCHECK_VERSION"; go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"; }
exit 0
