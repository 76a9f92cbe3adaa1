#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo-afl / AFL++) of everything flux-trt reads from user bytes: builds
# the `fuzz/` crate with AFL instrumentation, then runs each target for SECONDS (default 600), one
# after another, from its committed seed corpus `fuzz/corpus/<target>/`, and writes a summary
# (execs, corpus, edges, crashes, hangs) per target.
#
#   tools/fuzz.sh [SECONDS] [TARGET...]     targets: lora manifest batch image_request adapter_request
#
# Needs `cargo install cargo-afl` (AFL++ is built by its install). Environment:
#   FUZZ_OUT          AFL output folders (default fuzz/out; fuzz/out/<target>/default/{queue,crashes,hangs})
#   FUZZ_RESULTS_DIR  where summary.md and <target>.fuzzer_stats go (default $FUZZ_OUT)
#   FUZZ_MEM_MB       memory limit of the target process (default 2048): a runaway allocation is a crash
#   CARGO_TARGET_DIR  build folder (default fuzz/target)
# A crash or hang found is copied to $FUZZ_RESULTS_DIR/<target>-crashes/ and makes the script exit 1;
# reproduce it with `fuzz/target/release/<target> < FILE` (or add it to fuzz/regressions/<target>/,
# which tests/fuzz_corpus.rs replays in `cargo test`).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(lora manifest batch image_request adapter_request)
out=${FUZZ_OUT:-fuzz/out}
results=${FUZZ_RESULTS_DIR:-$out}
mkdir -p "$out" "$results"
out=$(cd "$out" && pwd)
results=$(cd "$results" && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/fuzz/target}
cargo afl --version >/dev/null 2>&1 || { echo "[fuzz] cargo-afl is not installed: cargo install cargo-afl" >&2; exit 2; }

echo "[fuzz] building fuzz targets ($(cargo afl --version))" >&2
(cd fuzz && cargo afl build --release --locked --quiet)

# No system tuning needed (no root settings): don't wait for CPU governor or core-pattern changes,
# don't pin to a core (other jobs share the machine), plain status lines instead of the TUI.
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_AFFINITY=1 AFL_NO_UI=1

summary=$results/summary.md
{
  echo "# flux-trt fuzzing: $(date -u +%Y-%m-%dT%H:%MZ), $(cargo afl --version), ${secs} s per target"
  echo
  echo "Host: $(nproc) cores, $(uname -sr). Command: \`tools/fuzz.sh $secs ${targets[*]}\`."
  echo
  echo "| target | seconds | execs | execs/s | seeds | corpus (queue) | edges found | crashes | hangs |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
} >"$summary"

found=0
for t in "${targets[@]}"; do
  seeds=fuzz/corpus/$t
  [ -d "$seeds" ] || { echo "[fuzz] no seed corpus $seeds" >&2; exit 2; }
  rm -rf "${out:?}/$t"
  echo "[fuzz] $t: ${secs} s from $(ls "$seeds" | wc -l) seeds" >&2
  # -V: stop after SECONDS; -t: a run over 2 s is a hang; -m: memory limit (MB); -x: the target's
  # dictionary (JSON tokens, extreme numbers, the format's keys).
  cargo afl fuzz -V "$secs" -t 2000 -m "${FUZZ_MEM_MB:-2048}" -x "fuzz/dict/$t.dict" -i "$seeds" -o "$out/$t" "$CARGO_TARGET_DIR/release/$t" \
    >"$out/$t.log" 2>&1 || { echo "[fuzz] afl-fuzz failed for $t; see $out/$t.log" >&2; tail -20 "$out/$t.log" >&2; exit 1; }
  stats=$out/$t/default/fuzzer_stats
  cp "$stats" "$results/$t.fuzzer_stats"
  get() { awk -F' *: *' -v k="$1" '$1 == k { print $2 }' "$stats"; }
  crashes=$(get saved_crashes)
  hangs=$(get saved_hangs)
  echo "| $t | $(get run_time) | $(get execs_done) | $(get execs_per_sec) | $(ls "$seeds" | wc -l) | $(get corpus_count) | $(get edges_found) | $crashes | $hangs |" >>"$summary"
  if [ "$crashes" != 0 ] || [ "$hangs" != 0 ]; then
    found=1
    mkdir -p "$results/$t-crashes"
    cp "$out/$t/default/crashes/"id* "$out/$t/default/hangs/"id* "$results/$t-crashes/" 2>/dev/null || true
    echo "[fuzz] $t: $crashes crashes, $hangs hangs -> $results/$t-crashes/" >&2
  fi
done
cat "$summary"
exit $found
