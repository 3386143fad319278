#!/usr/bin/env bash
# Regenerates api/edgev1 from edge.proto with pinned generator versions.
# protoc itself comes from Debian's protobuf-compiler (3.21.x); the Go
# plugins are pinned here and installed into .tools/.
set -euo pipefail
cd "$(dirname "$0")/.."
PROTOC_GEN_GO=v1.36.12
PROTOC_GEN_GO_GRPC=v1.5.1
TOOLS="$PWD/.tools"
mkdir -p "$TOOLS"
if ! command -v protoc >/dev/null; then
  if [ "$(id -u)" = 0 ]; then apt-get install -y -q protobuf-compiler >/dev/null; else sudo apt-get install -y -q protobuf-compiler >/dev/null; fi
fi
[ -x "$TOOLS/protoc-gen-go-$PROTOC_GEN_GO" ] || {
  GOBIN="$TOOLS" go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO"
  mv "$TOOLS/protoc-gen-go" "$TOOLS/protoc-gen-go-$PROTOC_GEN_GO"
}
[ -x "$TOOLS/protoc-gen-go-grpc-$PROTOC_GEN_GO_GRPC" ] || {
  GOBIN="$TOOLS" go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC"
  mv "$TOOLS/protoc-gen-go-grpc" "$TOOLS/protoc-gen-go-grpc-$PROTOC_GEN_GO_GRPC"
}
protoc -I api/edgev1 -I /usr/include \
  --plugin=protoc-gen-go="$TOOLS/protoc-gen-go-$PROTOC_GEN_GO" \
  --plugin=protoc-gen-go-grpc="$TOOLS/protoc-gen-go-grpc-$PROTOC_GEN_GO_GRPC" \
  --go_out=api/edgev1 --go_opt=paths=source_relative \
  --go-grpc_out=api/edgev1 --go-grpc_opt=paths=source_relative \
  api/edgev1/edge.proto
echo "regenerated api/edgev1"
