#!/usr/bin/env python3
"""Make the benchmark tree for bench/btrfs.sh: ~30k entries, ~200 MB,
the same bytes on every run (fixed seed, fixed mtimes)."""
import os, random, sys

root = sys.argv[1]
rnd = random.Random(42)
os.makedirs(root)
dirs = []
for i in range(600):
    d = os.path.join(root, "d%03d" % (i // 30), "s%03d" % i)
    os.makedirs(d, exist_ok=True)
    dirs.append(d)
blob = rnd.randbytes(8 << 20)
total = 0
n = 0
while n < 29000:
    d = dirs[n % len(dirs)]
    r = rnd.random()
    if r < 0.80:
        size = rnd.randint(0, 6000)          # small config/text files
    elif r < 0.99:
        size = rnd.randint(6000, 30000)      # libraries, binaries
    else:
        size = rnd.randint(100000, 300000)   # a few big ones
    off = rnd.randint(0, len(blob) - size - 1)
    p = os.path.join(d, "f%05d" % n)
    with open(p, "wb") as f:
        f.write(blob[off:off + size])
    total += size
    n += 1
    if n % 500 == 0:
        os.symlink("f%05d" % (n - 1), os.path.join(d, "l%05d" % n))
        os.link(p, os.path.join(d, "h%05d" % n))
for dirpath, dirnames, filenames in os.walk(root):
    for name in filenames + dirnames:
        os.utime(os.path.join(dirpath, name), ns=(1700000000123456789, 1700000000123456789), follow_symlinks=False)
print("tree %s: %d files, %d bytes" % (root, n, total))
