#!/usr/bin/env bash
# End-to-end check with the plain `nats` CLI: start `falbridge dev` on random
# loopback ports, `nats pub` one trigger in each of the three accepted forms
# plus a bad one, and expect three results and one error on `nats sub`.
# Installs the CLI with `go install` when it is missing. Exits non-zero on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
NATSCLI_VERSION=${NATSCLI_VERSION:-v0.5.1}
gobin_path=$(go env GOBIN); export PATH="${gobin_path:-$(go env GOPATH)/bin}:$PATH"
if ! command -v nats >/dev/null 2>&1; then
  gobin=$(go env GOBIN); gobin=${gobin:-$(go env GOPATH)/bin}
  echo "installing the nats CLI ${NATSCLI_VERSION} into $gobin (add it to PATH to use nats yourself)"
  GOFLAGS= go install "github.com/nats-io/natscli/nats@${NATSCLI_VERSION}"
fi

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/falbridge" ./cmd/falbridge
"$work/falbridge" dev --nats.embedded.listen 127.0.0.1:0 --webhook.listen 127.0.0.1:0 \
  --admin.listen 127.0.0.1:0 --sim.addr 127.0.0.1:0 --sim.latency 100ms >"$work/dev.out" 2>"$work/dev.err" &
pids+=($!)
for _ in $(seq 1 100); do grep -q "Ctrl-C" "$work/dev.out" 2>/dev/null && break; sleep 0.1; done
url=$(awk '/^  nats:/ {print $2}' "$work/dev.out")
[ -n "$url" ] || { echo "falbridge dev did not start"; cat "$work/dev.err"; exit 1; }
echo "falbridge dev is up, NATS at $url"

timeout 30 nats -s "$url" sub 'fal.results.>' --count 3 --raw >"$work/results" 2>&1 &
pids+=($!); results_pid=$!
timeout 30 nats -s "$url" sub 'fal.errors.>' --count 1 --raw >"$work/errors" 2>&1 &
pids+=($!); errors_pid=$!
sleep 0.5

nats -s "$url" pub fal.requests.demo '{"id":"cli-canonical","model_id":"fal-ai/flux/schnell","input":{"prompt":"a red fox in snow","image_size":"landscape_4_3","num_images":2}}'
nats -s "$url" pub fal.requests.demo '{"id":"cli-flat","model_id":"fal-ai/flux/schnell","prompt":"a red fox in snow","image_size":"square_hd","num_images":2}'
nats -s "$url" pub fal.requests.demo '{"id":"cli-tool","model":"fal-ai/florence-2-large/caption","input_params":{},"image_input":"https://example.com/fox.png"}'
nats -s "$url" pub fal.requests.demo '{"id":"cli-bad","model_id":"fal-ai//flux","input":{}}'

wait "$results_pid" || { echo "FAIL: fewer than 3 results"; cat "$work/results"; cat "$work/dev.err"; exit 1; }
wait "$errors_pid" || { echo "FAIL: no error event"; cat "$work/errors"; exit 1; }
for id in cli-canonical cli-flat cli-tool; do
  grep -q "\"id\":\"$id\"" "$work/results" || { echo "FAIL: no result for $id"; cat "$work/results"; exit 1; }
done
grep -q '"code":"invalid_model"' "$work/errors" || { echo "FAIL: wrong error event"; cat "$work/errors"; exit 1; }
echo "results:"; cut -c1-160 "$work/results"
echo "error:"; cut -c1-160 "$work/errors"
echo "nats CLI end-to-end: 3 results, 1 error event: ok"
