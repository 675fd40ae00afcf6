#!/usr/bin/env bash
# Regenerate the small caller speech clips used by the replay scenarios (scripts/calls/clips/).
# Run once by hand; the outputs are committed, so CI and the demo need neither tool.
# Needs: espeak-ng and sox (Debian: apt-get install -y espeak-ng sox).
# Output: raw 8 kHz mono G.711 μ-law (no header), exactly what Twilio streams.
set -euo pipefail
out="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/calls/clips"
mkdir -p "$out"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

clip() {  # clip NAME "TEXT"
    espeak-ng -v en-us -s 165 -w "$tmp/$1.wav" "$2"
    # Resample to 8 kHz, trim leading/trailing silence, encode μ-law raw.
    sox "$tmp/$1.wav" -r 8000 -c 1 -e mu-law -b 8 -t raw "$out/$1.ulaw" \
        silence 1 0.02 1% reverse silence 1 0.02 1% reverse
    echo "$out/$1.ulaw: $(stat -c %s "$out/$1.ulaw") bytes"
}

clip opening_hours "What are your opening hours?"
clip stop_wait "Stop, wait a moment."
clip thanks_bye "Thank you, goodbye."
