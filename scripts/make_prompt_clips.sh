#!/usr/bin/env bash
# Regenerate the bundled prompt clips (actors/call/assets/<name>.ulaw) the prompt cache falls back
# to. Run once by hand; the outputs are committed, so CI and the service need neither tool.
# Needs: espeak-ng and sox (Debian: apt-get install -y espeak-ng sox).
# Output: raw 8 kHz mono G.711 μ-law (no header), what Twilio plays.
# greeting.ulaw ("Hello, how can I help?") and goodbye.ulaw ("Sorry, we must end the call now.
# Goodbye.") were rendered the same way; pass their names to re-render them too.
set -euo pipefail
out="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/actors/call/assets"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

declare -A text=(
    [greeting]="Hello, how can I help?"
    [hold]="Please hold for a moment."
    [transferring]="Transferring your call now."
    [goodbye]="Sorry, we must end the call now. Goodbye."
    [sorry]="Sorry, something went wrong. Please try again."
)

clip() {  # clip NAME
    espeak-ng -v en-us -s 165 -w "$tmp/$1.wav" "${text[$1]}"
    # Resample to 8 kHz, trim leading/trailing silence, encode μ-law raw.
    sox "$tmp/$1.wav" -r 8000 -c 1 -e mu-law -b 8 -t raw "$out/$1.ulaw" \
        silence 1 0.02 1% reverse silence 1 0.02 1% reverse
    echo "$out/$1.ulaw: $(stat -c %s "$out/$1.ulaw") bytes"
}

if [ "$#" -eq 0 ]; then set -- hold transferring sorry; fi
for name in "$@"; do clip "$name"; done
