#!/usr/bin/env bash
# Run every example in quick mode; report all failures, then exit non-zero if any failed.
# Usage: examples/run_all.sh [OUT_DIR]   (default: a fresh temporary folder)
set -u
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$(mktemp -d -t tour-examples-XXXXXX)}
mkdir -p "$out"
py=${PYTHON:-python}
export HF_HUB_OFFLINE=1 MPLBACKEND=Agg
failed=()
start=$SECONDS
for script in "$here"/*.py; do
  name=$(basename "$script" .py)
  t0=$SECONDS
  if "$py" "$script" --quick --out "$out" >"$out/$name.log" 2>&1; then
    echo "ok      $name ($((SECONDS - t0)) s)"
  else
    echo "FAILED  $name ($((SECONDS - t0)) s): $(grep -v '^\s*$' "$out/$name.log" | tail -n 1)"
    failed+=("$name")
  fi
done
echo "examples: $(( $(ls "$here"/*.py | wc -l) - ${#failed[@]} )) ok, ${#failed[@]} failed in $((SECONDS - start)) s (logs in $out)"
[ ${#failed[@]} -eq 0 ]
