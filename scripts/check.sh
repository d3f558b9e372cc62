#!/usr/bin/env bash
# The checks beyond CI's test command: the whole suite under AddressSanitizer and UBSan, then each
# libFuzzer target on its committed corpus and its regression inputs. Run before calling an issue
# done (CONTRIBUTING.md). Needs `bash scripts/setup.sh --fuzz` once (Debian's clang).
#
#   bash scripts/check.sh                    # sanitizers, then 30 s per fuzz target
#   bash scripts/check.sh --fuzz-seconds 600 # the long fuzz runs quoted in closing notes
#   bash scripts/check.sh --no-asan          # fuzzing only
set -euo pipefail
cd "$(dirname "$0")/.."

fuzz_seconds=30
run_asan=1
while [ $# -gt 0 ]; do
  case "$1" in
    --fuzz-seconds) fuzz_seconds="${2:?--fuzz-seconds needs a number}"; shift 2 ;;
    --no-asan) run_asan=0; shift ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "check.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
case "$fuzz_seconds" in ''|*[!0-9]*) echo "check.sh: --fuzz-seconds wants a whole number, got '$fuzz_seconds'" >&2; exit 2 ;; esac

if [ "$run_asan" = 1 ]; then
  echo "== the whole suite under AddressSanitizer + UBSan (preset asan)"
  cmake --preset asan >/dev/null
  cmake --build build/asan
  ctest --preset asan -j2 --output-on-failure
fi

if ! command -v clang++ >/dev/null; then
  echo "check.sh: clang++ is missing: run 'bash scripts/setup.sh --fuzz' first" >&2
  exit 1
fi
echo "== fuzz targets (preset fuzz), ${fuzz_seconds} s each"
cmake --preset fuzz >/dev/null
cmake --build build/fuzz
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for target in safetensors idx arch capi; do
  binary="build/fuzz/fuzz/fuzz_${target}"
  # Regression inputs first: each once crashed a target and must now run cleanly.
  for input in fuzz/regressions/*; do
    case "$(basename "$input")" in "${target}"_*) "$binary" "$input" >/dev/null 2>&1 \
      || { echo "check.sh: regression input $input fails again: $binary $input" >&2; exit 1; } ;; esac
  done
  # The grown corpus stays in build/fuzz/corpus/, so the next run goes on from where this one ended.
  corpus="build/fuzz/corpus/${target}"
  mkdir -p "$corpus" && cp -rn "fuzz/corpus/${target}/." "$corpus/"
  echo "-- fuzz_${target}"
  "$binary" "$corpus" -max_total_time="$fuzz_seconds" -print_final_stats=1 \
    -artifact_prefix="$work/crash-${target}-" 2>&1 | grep -E '^(#[0-9]+[[:space:]]+DONE|Done [0-9]+ runs|stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+==ERROR|SUMMARY)' || true
  if ls "$work"/crash-"${target}"-* >/dev/null 2>&1; then
    kept="fuzz-crash-${target}-$(date +%s)"
    cp "$(ls "$work"/crash-"${target}"-* | head -1)" "$kept"
    echo "check.sh: fuzz_${target} found a failing input, kept as ./$kept; add it to fuzz/regressions/" >&2
    exit 1
  fi
done
echo "check.sh: all checks passed"
