#!/usr/bin/env python3
"""What scattered page writes cost on this disk against contiguous ones.

Writes 1 GiB as 262,144 pwrites of 4 KiB into FILE (which must already be
written and at least 2 GiB, so no block is allocated) at positions in order,
at random positions in page order, or at random positions unsorted, then
fdatasync; prints the time of each part.

    python3 benches/kube/scattered_writes.py FILE seq|sorted|rand
"""
import os
import random
import sys
import time

path, mode = sys.argv[1], sys.argv[2]
fd = os.open(path, os.O_RDWR)
pages = os.fstat(fd).st_size // 4096
n = 262_144
buf = os.urandom(4096 * 64)
random.seed(1)
if mode == "seq":
    pos = list(range(n))
elif mode == "sorted":
    pos = sorted(random.sample(range(pages), n))
elif mode == "rand":
    pos = random.sample(range(pages), n)
else:
    sys.exit("mode: seq, sorted or rand")
t0 = time.time()
for i, p in enumerate(pos):
    os.pwrite(fd, buf[(i % 64) * 4096:(i % 64 + 1) * 4096], p * 4096)
t1 = time.time()
os.fdatasync(fd)
t2 = time.time()
print(f"{mode} writes {t1 - t0:.2f} s, fdatasync {t2 - t1:.2f} s, total {t2 - t0:.2f} s")
