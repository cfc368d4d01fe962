#!/usr/bin/env bash
# Runs every native Go fuzz target in the repository, one after the
# other, each for FUZZTIME (default 30s), and prints a table: package,
# target, execs, new corpus entries, result. The targets are listed from
# the code (every `func FuzzX(f *testing.F)` in a _test.go file), so a new
# target is picked up without editing this. A crash leaves its input in
# the package's testdata/fuzz/FuzzX/ (commit it with the fix); the run
# goes on to the next target and exits non-zero at the end.
#   scripts/fuzz.sh                 # all targets, 30s each
#   FUZZTIME=5m scripts/fuzz.sh     # longer
#   FUZZ=FuzzRead scripts/fuzz.sh   # only targets matching a regexp
#   FUZZMINTIME=1m scripts/fuzz.sh  # minimise new inputs longer (default 2s)
set -uo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-30s}
FUZZ=${FUZZ:-.}
# Go minimises each new input for up to 60 s by default; with a large
# seed (a real DTB, a .deb) that takes a short run's whole time.
FUZZMINTIME=${FUZZMINTIME:-2s}
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
table=()
failed=0
while read -r file; do
	pkg=./$(dirname "$file")
	for fn in $(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(f \*testing\.F).*/\1/p' "$file"); do
		[[ $fn =~ $FUZZ ]] || continue
		log=$logs/$(echo "$pkg.$fn" | tr / _)
		echo "== $pkg $fn ($FUZZTIME)"
		if $GO test -run '^$' -fuzz "^$fn\$" -fuzztime "$FUZZTIME" -fuzzminimizetime "$FUZZMINTIME" "$pkg" >"$log" 2>&1; then
			result=ok
		else
			result=FAIL
			failed=1
			grep -A20 -- '--- FAIL' "$log" | head -40
		fi
		last=$(grep 'fuzz: elapsed' "$log" | tail -1)
		execs=$(sed -n 's/.*execs: \([0-9]*\).*/\1/p' <<<"$last")
		new=$(sed -n 's/.*new interesting: \([0-9]*\).*/\1/p' <<<"$last")
		table+=("$(printf '%-28s %-22s %10s %5s  %s' "$pkg" "$fn" "${execs:-?}" "${new:-?}" "$result")")
	done
done < <(grep -rl --include='*_test.go' '^func Fuzz' . | sed 's|^\./||' | sort)
printf '\n%-28s %-22s %10s %5s  %s\n' package target execs new result
printf '%s\n' "${table[@]}"
exit $failed
