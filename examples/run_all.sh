#!/usr/bin/env bash
# Run every example as a plain script in quick mode; report all failures, then exit non-zero if any failed.
# Usage: examples/run_all.sh [OUT_DIR]   (default: a fresh temporary folder)
# The examples read TOUR_QUICK=1 (short sizes) and TOUR_OUT (their output folder) from the environment, the same
# variables a notebook uses, so no script needs flags here.
set -u
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$(mktemp -d -t tour-examples-XXXXXX)}
mkdir -p "$out" && out=$(cd "$out" && pwd)
py=$(command -v "${PYTHON:-python}") || { echo "no python found: set PYTHON"; exit 2; }
py="$(cd "$(dirname "$py")" && pwd)/$(basename "$py")"  # absolute, but not resolved: a venv's link must stay
export HF_HUB_OFFLINE=1 MPLBACKEND=Agg TOUR_QUICK=1 TOUR_OUT="$out"
failed=()
start=$SECONDS
for script in "$here"/*.py; do
  name=$(basename "$script" .py)
  t0=$SECONDS
  # Run from inside $out, so anything written to the working directory lands there too.
  if (cd "$out" && "$py" "$script") >"$out/$name.log" 2>&1; then
    echo "ok      $name ($((SECONDS - t0)) s)"
  else
    echo "FAILED  $name ($((SECONDS - t0)) s): $(grep -v '^\s*$' "$out/$name.log" | tail -n 1)"
    failed+=("$name")
  fi
done
echo "examples: $(( $(ls "$here"/*.py | wc -l) - ${#failed[@]} )) ok, ${#failed[@]} failed in $((SECONDS - start)) s (logs in $out)"
[ ${#failed[@]} -eq 0 ]
