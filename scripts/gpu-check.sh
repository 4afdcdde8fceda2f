#!/usr/bin/env bash
# The check on a machine with a GPU, from what scripts/gpu-pack.sh put in .gpu/: the adapters,
# every kernel, whole-step and tuning test on the GPU, `bench --tune full --json` (which tunes
# first: its tuning table, tuned against default, is in OUT/bench.txt, the cache in
# OUT/cache/kd-wgpu), and the whole default program with --metrics-out, tuned from that cache.
# Everything goes to OUT; the exit status is non-zero if any part failed.
#
#   scripts/gpu-check.sh OUT            the real check
#   scripts/gpu-check.sh OUT --quick    small limits and few repetitions (tried on lavapipe)
set -uo pipefail
out=${1:?usage: scripts/gpu-check.sh OUT [--quick]}
quick=${2:-}
root=$(cd "$(dirname "$0")/.." && pwd)
pack=${KD_GPU_PACK:-$root/.gpu}
bin=$pack/kd-wgpu
[ -x "$bin" ] || { echo "$bin is missing: run scripts/gpu-pack.sh first and carry .gpu" >&2; exit 2; }
mkdir -p "$out"
export KD_DATA_DIR=$pack/data
# The tuning cache, kept with the results.
export XDG_CACHE_HOME=$out/cache
failed=()
step() { # step NAME COMMAND...: runs it with its output in OUT/NAME.txt, timed
    local name=$1; shift
    local start=$SECONDS
    if "$@" >"$out/$name.txt" 2>&1; then status=ok; else status="FAILED ($?)"; failed+=("$name"); fi
    printf '%-28s %-10s %4d s\n' "$name" "$status" $((SECONDS - start)) | tee -a "$out/summary.txt"
}

{ date -u; uname -srm; command -v nvidia-smi >/dev/null && nvidia-smi; } >"$out/machine.txt" 2>&1
step adapters "$bin" --list-adapters
for test in "$pack"/tests/*; do
    step "test-$(basename "$test")" "$test" --test-threads=1
done
if [ "$quick" = --quick ]; then
    step bench "$bin" bench --tune full --reps 1 --steps 2 --json "$out/bench.json"
    step default-program "$bin" --offline --train-limit 640 --test-limit 320 --teacher-epochs 1 --student-epochs 1 \
        --metrics-out "$out/metrics.json" --plot "$out/curves.svg"
else
    step bench "$bin" bench --tune full --json "$out/bench.json"
    step default-program "$bin" --offline --metrics-out "$out/metrics.json" --plot "$out/curves.svg"
fi
grep -h "^test result" "$out"/test-*.txt >>"$out/summary.txt"
if [ ${#failed[@]} -gt 0 ]; then
    echo "failed: ${failed[*]} (see $out)" | tee -a "$out/summary.txt"
    exit 1
fi
echo "all parts passed; results in $out" | tee -a "$out/summary.txt"
