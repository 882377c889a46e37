#!/usr/bin/env bash
# Build driftcar's collector distribution, build/otelcol-driftcar, from collector-config/builder.yaml.
#
#   collector-config/build.sh            build (a no-op when the stamp matches the inputs)
#   collector-config/build.sh --relock   re-resolve the modules and rewrite collector-config/otelcol.go.{mod,sum}
#                                        (done by itself when builder.yaml no longer matches the lock)
#
# Reproducible: the resolved module graph is committed (otelcol.go.mod / otelcol.go.sum next to this
# script) and used as is; the binary is built with -trimpath, without VCS stamping, stripped.
# The stamp build/otelcol-driftcar.stamp holds the hash of the manifest, the lock files, this script
# and the Go version; an unchanged hash reuses the binary.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILDER_VERSION=v0.160.0            # the release every module in builder.yaml is at
HERE=collector-config
OUT=build
SRC=$OUT/otelcol-src
BIN=$OUT/otelcol-driftcar
STAMP=$BIN.stamp

# Only the module proxy is reachable: no fallback to VCS hosts, which would hang and fail.
export GOPROXY=https://proxy.golang.org GOFLAGS=-buildvcs=false GOTOOLCHAIN=local CGO_ENABLED=0

relock=0
[[ "${1:-}" == "--relock" ]] && relock=1
# The lock names the manifest it was resolved from; an edited manifest re-resolves it.
manifest_line="// resolved from builder.yaml sha256 $(sha256sum "$HERE/builder.yaml" | cut -d' ' -f1)"
if ! head -1 "$HERE/otelcol.go.mod" 2>/dev/null | grep -qxF "$manifest_line"; then
  relock=1
fi

inputs_hash() {
  { cat "$HERE/builder.yaml" "$HERE/build.sh"; cat "$HERE"/otelcol.go.mod "$HERE"/otelcol.go.sum 2>/dev/null || true
    go version; } | sha256sum | cut -d' ' -f1
}

if [[ $relock == 0 && -x $BIN && -f $STAMP && "$(cat "$STAMP")" == "$(inputs_hash)" ]]; then
  echo "otelcol-driftcar is up to date ($BIN)"
  exit 0
fi

start=$(date +%s)
mkdir -p "$OUT/tools"
GOBIN="$PWD/$OUT/tools" go install "go.opentelemetry.io/collector/cmd/builder@$BUILDER_VERSION"
rm -rf "$SRC"
if [[ $relock == 1 ]]; then
  # Generate the sources and go.mod. The builder's own `go mod tidy` then fails on a module that
  # only the file exporter's tests import and that the proxy does not serve: its failure is
  # tolerated once go.mod is written, and `go mod tidy -e` gets past that module.
  "$OUT/tools/builder" --config "$HERE/builder.yaml" --skip-compilation --skip-strict-versioning \
    || echo "note: the builder's go mod tidy failed; retrying with go mod tidy -e"
  [[ -f $SRC/go.mod ]] || { echo "error: the builder generated no go.mod" >&2; exit 1; }
  (cd "$SRC" && go mod tidy -e)
  { echo "$manifest_line"; cat "$SRC/go.mod"; } >"$HERE/otelcol.go.mod"
  cp "$SRC/go.sum" "$HERE/otelcol.go.sum"
  echo "re-resolved the modules: commit collector-config/otelcol.go.mod and otelcol.go.sum"
else
  # Generate the sources only; the module graph is the committed lock.
  "$OUT/tools/builder" --config "$HERE/builder.yaml" --skip-compilation --skip-get-modules
  cp "$HERE/otelcol.go.mod" "$SRC/go.mod"
  cp "$HERE/otelcol.go.sum" "$SRC/go.sum"
fi
[[ -f $SRC/components.go ]] || { echo "error: the builder generated no sources" >&2; exit 1; }

(cd "$SRC" && go build -trimpath -ldflags="-s -w" -o "../$(basename "$BIN")" .)
inputs_hash >"$STAMP"
echo "built $BIN in $(( $(date +%s) - start ))s, $(du -m "$BIN" | cut -f1) MiB"
