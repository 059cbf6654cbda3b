#!/usr/bin/env bash
# `make demo`: falbridge end to end, offline, in well under a minute.
#
# Builds bin/falbridge, starts `falbridge dev` (embedded NATS + fal simulator
# + bridge) on random loopback ports, publishes the classic trigger with
# `falbridge publish --wait` (progress, then the result and its image URLs),
# then a bad trigger and its error event, shows `falbridge status` and the
# web console's URL, and stops dev with SIGTERM. Needs Go only: no network, no FAL_KEY, no nats CLI.
# Exits non-zero if anything does not behave as shown; leaves no process.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
BIN=${BIN:-bin}

work=$(mktemp -d)
dev_pid=""
cleanup() {
  if [ -n "$dev_pid" ] && kill -0 "$dev_pid" 2>/dev/null; then
    kill -TERM "$dev_pid" 2>/dev/null || true
    wait "$dev_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -t 1 ]; then bold=$'\e[1m'; dim=$'\e[2m'; off=$'\e[0m'; else bold=""; dim=""; off=""; fi
step() { printf '\n%s== %s%s\n' "$bold" "$*" "$off"; }
show() { printf '%s$ %s%s\n' "$dim" "$*" "$off"; }
fail() { echo "demo FAILED: $*" >&2; echo "--- falbridge dev log (last 30 lines) ---" >&2; tail -n 30 "$work/dev.log" >&2 || true; exit 1; }

step "build"
show "$GO build -o $BIN/falbridge ./cmd/falbridge"
"$GO" build -o "$BIN/falbridge" ./cmd/falbridge
fb="$BIN/falbridge"

step "start falbridge dev (embedded NATS + fal simulator + bridge, random loopback ports)"
"$fb" dev --nats.embedded.listen 127.0.0.1:0 --webhook.listen 127.0.0.1:0 \
  --admin.listen 127.0.0.1:0 --sim.addr 127.0.0.1:0 >"$work/dev.out" 2>"$work/dev.log" &
dev_pid=$!
for _ in $(seq 1 300); do
  grep -q "Ctrl-C" "$work/dev.out" 2>/dev/null && break
  kill -0 "$dev_pid" 2>/dev/null || fail "falbridge dev exited"
  sleep 0.1
done
grep -q "Ctrl-C" "$work/dev.out" || fail "falbridge dev not ready within 30s"
sed -n '2,5p' "$work/dev.out"
NATS_URL=$(awk '/^  nats:/ {print $2}' "$work/dev.out")
export NATS_URL # the client commands below read it (default: dev's usual 127.0.0.1:4222)

step "1. publish a trigger and wait for its result"
show "falbridge publish --model fal-ai/flux/schnell --prompt 'a red fox in snow' --image-size landscape_4_3 --num-images 2 --id demo-fox --wait"
"$fb" publish --model fal-ai/flux/schnell --prompt "a red fox in snow" --image-size landscape_4_3 \
  --num-images 2 --id demo-fox --wait >"$work/result.txt" || { cat "$work/result.txt"; fail "publish --wait did not succeed"; }
# The human form: a header and the media lines, then the output JSON (cut
# here for brevity).
sed -n '1,/^output:/p' "$work/result.txt" | sed '$d'
echo "output: {…}  (the whole output: falbridge result demo-fox --json)"
[ "$(grep -c 'image/png' "$work/result.txt")" -ge 2 ] || fail "expected two image URLs in the result"

step "2. a bad trigger (malformed model id): its error event, exit code 1"
show "falbridge publish --model fal-ai//flux --prompt 'a red fox in snow' --id demo-bad --wait"
rc=0
"$fb" publish --model fal-ai//flux --prompt "a red fox in snow" --id demo-bad --wait || rc=$?
[ "$rc" -eq 1 ] || fail "expected exit code 1 for the bad trigger, got $rc"
echo "(exit code $rc)"

step "3. the same error event, as scripts see it"
show "falbridge result demo-bad --json"
"$fb" result demo-bad --json >"$work/bad.json" || true
cat "$work/bad.json"
grep -q '"code":"invalid_model"' "$work/bad.json" || fail "expected error code invalid_model"

step "4. what falbridge knows of the first job"
show "falbridge status demo-fox"
"$fb" status demo-fox | sed '/^$/,$d'

step "5. the web console (on the admin listener; on in dev)"
console_url=$(awk '/^  console:/ {print $2}' "$work/dev.out")
[ -n "$console_url" ] || fail "falbridge dev did not print the console URL"
echo "while dev runs: ${console_url}jobs/demo-fox (its images), ${console_url}errors (demo-bad, with retry)"

step "stop falbridge dev (SIGTERM: drains, exits 0)"
kill -TERM "$dev_pid"
rc=0
wait "$dev_pid" || rc=$?
dev_pid=""
[ "$rc" -eq 0 ] || fail "falbridge dev exited with $rc"
echo "demo ok. Next: make dev, then bin/falbridge publish … / watch / status (see README),"
echo "and the web console: http://127.0.0.1:9090/console/"
