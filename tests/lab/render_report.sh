#!/bin/sh
# Renders DIR/report.html in headless Chromium and checks that the page has
# every chart results.json counts (the DOM after parsing, not just the file),
# each section the charts of its experiment, every heat map cell, and no
# console error; takes a screenshot. Exit 77 (ctest: skipped) when
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
# Per experiment: its section in the rendered page has the charts results.json
# gives it (each experiment's keys sit at six spaces of indent, "charts" before "name").
awk '/^      "charts": /{c=$2; gsub(/[^0-9]/, "", c)} /^      "name": /{n=$2; gsub(/[",]/, "", n); print n, c}' \
  "$dir/results.json" > "$dir/expected_charts.txt"
tr '\n' ' ' < "$dir/dom.html" | sed 's/<section id="/\
/g' | tail -n +2 > "$dir/sections.txt"
while read -r name count; do
  in_section=$(grep "^$name\"" "$dir/sections.txt" | grep -o 'class="chart"' | wc -l)
  [ "$in_section" -eq "$count" ] ||
    { echo "section $name: $in_section charts rendered, results.json says $count"; exit 1; }
done < "$dir/expected_charts.txt"
echo "every section has its charts: $(wc -l < "$dir/expected_charts.txt") sections"
# Heat maps: every cell written is a cell rendered.
cells_written=$(grep -o 'class="cell"' "$dir/report.html" | wc -l)
cells_rendered=$(grep -o 'class="cell"' "$dir/dom.html" | wc -l)
[ "$cells_written" -eq "$cells_rendered" ] ||
  { echo "heat map cells: $cells_rendered rendered of $cells_written"; exit 1; }
# shellcheck disable=SC2086
timeout 90 "$browser" $flags --hide-scrollbars --window-size=1280,4000 \
  --screenshot="$dir/screenshot.png" "file://$(realpath "$dir/report.html")" 2>> "$dir/chromium.log"
[ -s "$dir/screenshot.png" ] || { echo "no screenshot"; exit 1; }
echo "rendered: $found charts, no console errors, screenshot $dir/screenshot.png"
