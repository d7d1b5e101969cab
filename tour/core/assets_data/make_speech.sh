#!/bin/sh
# Makes speech.wav, the audio stop's default clip: one English sentence spoken by espeak-ng
# (Debian: apt-get install espeak-ng), 22.05 kHz mono 16-bit PCM, about 4.7 s and 200 KB.
# The shipped file was made with eSpeak NG 1.51; other versions may differ slightly in timing.
# Run from anywhere: sh tour/assets/make_speech.sh
set -eu
cd "$(dirname "$0")"
espeak-ng -v en-us -s 150 -w speech.wav "Every audio model starts by turning sound into features like these."
