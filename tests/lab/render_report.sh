#!/bin/sh
# Renders DIR/report.html in headless Chromium and checks that the page has
# every chart results.json counts (the DOM after parsing, not just the file)
# and no console error; takes a screenshot. Exit 77 (ctest: skipped) when
# Chromium is not installed.
#   render_report.sh DIR
set -u
dir=$1
browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
  echo "chromium not found: skipping (Debian package chromium)"
  exit 77
fi
[ -f "$dir/report.html" ] || { echo "no $dir/report.html"; exit 1; }
[ -f "$dir/results.json" ] || { echo "no $dir/results.json"; exit 1; }
# The top-level "charts" of results.json (two spaces of indent: the top level).
expected=$(sed -n 's/^  "charts": \([0-9]*\),*$/\1/p' "$dir/results.json")
[ -n "$expected" ] || { echo "results.json has no top-level charts count"; exit 1; }
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
flags="--headless --no-sandbox --disable-gpu --user-data-dir=$profile --enable-logging=stderr --v=0"
# shellcheck disable=SC2086
timeout 90 "$browser" $flags --dump-dom "file://$(realpath "$dir/report.html")" \
  > "$dir/dom.html" 2> "$dir/chromium.log"
status=$?
[ $status -eq 0 ] || { echo "chromium failed ($status):"; tail -20 "$dir/chromium.log"; exit 1; }
found=$(grep -o 'class="chart"' "$dir/dom.html" | wc -l)
echo "charts in the rendered page: $found, in results.json: $expected"
[ "$found" -eq "$expected" ] || { echo "chart count differs"; exit 1; }
[ "$found" -gt 0 ] || { echo "no charts"; exit 1; }
if grep -E "Uncaught|ERROR:CONSOLE|CONSOLE\([0-9]+\)|Failed to load" "$dir/chromium.log"; then
  echo "the page logged errors (above)"
  exit 1
fi
grep -q "</section>" "$dir/dom.html" || { echo "no sections in the rendered page"; exit 1; }
# Each experiment's section holds the charts results.json gives it (experiment
# objects sit at six spaces of indent, their keys sorted: charts before name).
sed -n 's/^      "name": "\([^"]*\)",*$/\1/p' "$dir/results.json" > "$dir/section_names.txt"
sed -n 's/^      "charts": \([0-9]*\),*$/\1/p' "$dir/results.json" > "$dir/section_charts.txt"
paste -d ' ' "$dir/section_names.txt" "$dir/section_charts.txt" > "$dir/charts_expected.txt"
awk 'BEGIN { RS = "<section id=\"" } NR > 1 { split($0, id, "\""); print id[1], gsub(/class="chart"/, "") }' \
  "$dir/dom.html" > "$dir/charts_found.txt"
if ! cmp -s "$dir/charts_expected.txt" "$dir/charts_found.txt"; then
  echo "charts per section differ (section, count): expected, then found:"
  cat "$dir/charts_expected.txt" "$dir/charts_found.txt"
  exit 1
fi
# shellcheck disable=SC2086
timeout 90 "$browser" $flags --hide-scrollbars --window-size=1280,4000 \
  --screenshot="$dir/screenshot.png" "file://$(realpath "$dir/report.html")" 2>> "$dir/chromium.log"
[ -s "$dir/screenshot.png" ] || { echo "no screenshot"; exit 1; }
echo "rendered: $found charts, no console errors, screenshot $dir/screenshot.png"
