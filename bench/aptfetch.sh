#!/usr/bin/env bash
# Benchmark (issue 20, item 1): a cold fetch of the default Debian root's
# packages (bookworm arm64, as `mkimage build --rootfs debian` resolves
# them), three ways, each into a fresh apt cache directory holding the
# same package lists (copied from mkimage's cache, which is only read):
#   pairs    one apt-cache show and one apt-get download per package
#            (how mkimage fetched before)
#   mkimage  how `mkimage build` fetches now (builder.FetchDebs)
#   apt-get  one plain `apt-get download` of the same NAME:arm64=VERSION list
# Prints the fetch's wall time (resolving the set, the same for all, left
# out), apt-get/apt-cache runs, all process starts (apt's
# methods too; counted with strace -f when it is installed), packages and
# MB fetched, side by side. Asserts nothing.
#   bench/aptfetch.sh
#   WAYS="mkimage apt-get" bench/aptfetch.sh   # leave out the slow one
set -euo pipefail
cd "$(dirname "$0")/.."
ways=${WAYS:-pairs mkimage apt-get}
work=$(mktemp -d /tmp/mkimage-bench-aptfetch.XXXXXX)
trap 'rm -rf "$work"' EXIT
go build -o "$work/aptfetch" ./bench/aptfetch

# One set of lists for every way: mkimage's, refreshed here if stale.
lists=${XDG_CACHE_HOME:-$HOME/.cache}/mkimage/apt/lists
mkdir -p "$work/seed/lists/partial"
cp "$lists"/*_* "$work/seed/lists/" 2>/dev/null || true
"$work/aptfetch" -dir "$work/seed" names >"$work/names" 2>"$work/names.log" || { cat "$work/names.log"; exit 1; }

apt_opts=(-o APT::Architecture=arm64 -o APT::Architectures=arm64 -o Dir::State::status=/dev/null)

# run WAY: fetch into a fresh directory under strace; prints
# "seconds apt_runs execs packages MB".
run() {
	local way=$1 dir="$work/$1"
	mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial" "$dir/debs"
	cp -r "$work/seed/lists/." "$dir/lists/"
	local cmd
	case $way in
	apt-get) cmd=(bash -c 'cd "$1/debs" && shift && exec apt-get -q "$@" download $(cat "$0")' "$work/names" "$dir"
		"${apt_opts[@]}" -o "Dir::State::Lists=$dir/lists" -o "Dir::Cache=$dir/cache") ;;
	*) cmd=("$work/aptfetch" -dir "$dir" "$way") ;;
	esac
	local trace=()
	if command -v strace >/dev/null; then
		trace=(strace -f -qq --seccomp-bpf -e trace=execve -e signal=none -o "$dir/trace")
	fi
	local s e secs
	s=$(date +%s.%N)
	"${trace[@]}" "${cmd[@]}" >"$dir/out" 2>"$dir/log" || { echo "$way failed:" >&2; tail -5 "$dir/log" >&2; }
	e=$(date +%s.%N)
	secs=$(echo "$e - $s" | bc)
	if [ "$way" != apt-get ]; then
		secs=$(tail -1 "$dir/out") # the helper's own timing, without resolving
	fi
	local apt="-" execs="-"
	if [ -f "$dir/trace" ]; then
		# A successful execve, its path remembered across strace's
		# <unfinished ...> / <... execve resumed> split.
		read -r apt execs < <(awk '
			/execve\(/ { match($0, /execve\("[^"]*"/); p[$1] = substr($0, RSTART + 8, RLENGTH - 9) }
			/= 0$/ && /execve/ { n++; if (p[$1] ~ /\/apt-(get|cache)$/) a++ }
			END { print a + 0, n + 0 }' "$dir/trace")
	fi
	local pkgs mb
	pkgs=$(find "$dir/debs" -maxdepth 1 -name '*.deb' | wc -l)
	mb=$(find "$dir/debs" -maxdepth 1 -name '*.deb' -printf '%s\n' | awk '{ n += $1 } END { printf "%.1f", n / 1e6 }')
	printf '%.1f %s %s %s %s\n' "${secs:-0}" "$apt" "$execs" "$pkgs" "$mb"
}

declare -A res
for w in $ways; do
	res[$w]=$(run "$w")
done

row() { # row LABEL FIELD
	printf '%-28s' "$1"
	for w in $ways; do
		printf ' %12s' "$(echo "${res[$w]}" | cut -d' ' -f"$2")"
	done
	echo
}
echo "cold fetch of the default Debian root ($(wc -l <"$work/names") packages), $(nproc) cores"
printf '%-28s' ""
for w in $ways; do printf ' %12s' "$w"; done
echo
row "wall time (s)" 1
row "apt-get/apt-cache runs" 2
row "process starts (execve)" 3
row "packages fetched" 4
row "MB fetched" 5
