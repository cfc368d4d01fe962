#!/bin/bash
# Send stream sizes of a realistic root (Debian's arm64 busybox-static and
# kernel package, ~5,000 entries, ~360 MB): our full stream, and our
# incremental streams for a one-file change, beside the kernel's
# `btrfs send` of the same subvolumes after `btrfs receive` of ours (that
# column needs root and btrfs-progs; "-" otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."
go test -count=1 -run '^$' -bench BenchmarkSize -benchtime 1x ./internal/build/sendstream 2>&1 |
	grep -v -e '^goos:' -e '^goarch:' -e '^pkg:' -e '^cpu:' -e '^PASS' -e '^ok'
