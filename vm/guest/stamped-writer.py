#!/usr/bin/env python3
"""Sequence-stamped random 4 KiB writes, for the device-mapper proofs.

write DEVICE SEED STOPFILE: O_DSYNC writes, one at a time, until STOPFILE exists; write n goes to block
  block_of(seed, n) and holds stamp(seed, n). Prints 'wrote N maxlatency_ms M' and exits 0, or prints the
  error and exits 1 at the first failed write.
verify IMAGE INITIAL SEED COUNT: IMAGE must equal INITIAL with writes 1..K applied, for the K of the highest
  stamp found in IMAGE (K <= COUNT). Prints 'prefix K' or what differs, exit 1.
"""
import hashlib
import os
import struct
import sys
import time

BLOCK = 4096
MAGIC = b'DLSTAMP1'


def block_of(seed, n, blocks):
    digest = hashlib.sha256(f'{seed}:{n}:where'.encode()).digest()
    return int.from_bytes(digest[:8], 'little') % blocks


def stamp(seed, n):
    head = MAGIC + struct.pack('<Q', n)
    body = hashlib.shake_256(f'{seed}:{n}:what'.encode()).digest(BLOCK - len(head))
    return head + body


def write(device, seed, stop_file):
    fd = os.open(device, os.O_WRONLY | os.O_DSYNC)
    blocks = os.lseek(fd, 0, os.SEEK_END) // BLOCK
    n = 0
    worst = 0.0
    try:
        while not os.path.exists(stop_file):
            n += 1
            start = time.monotonic()
            os.pwrite(fd, stamp(seed, n), block_of(seed, n, blocks) * BLOCK)
            took = time.monotonic() - start
            worst = max(worst, took)
            if took > 0.5:
                print(f'slow write {n} took_ms {took * 1000:.0f} ended_at {time.time():.3f}', flush=True)
            if n % 200 == 0:
                print(f'progress {n}', flush=True)
    except OSError as error:
        print(f'write {n} failed: {error}', flush=True)
        sys.exit(1)
    os.close(fd)
    print(f'wrote {n} maxlatency_ms {worst * 1000:.0f}', flush=True)


def verify(image, initial, seed, count):
    with open(image, 'rb') as f:
        got = bytearray(f.read())
    with open(initial, 'rb') as f:
        expected = bytearray(f.read())
    blocks = len(expected) // BLOCK
    k = 0
    for b in range(blocks):
        head = got[b * BLOCK:b * BLOCK + 16]
        if head[:8] == MAGIC:
            k = max(k, struct.unpack('<Q', head[8:16])[0])
    if k > count:
        print(f'image holds write {k} but only {count} were made')
        sys.exit(1)
    for n in range(1, k + 1):
        at = block_of(seed, n, blocks) * BLOCK
        expected[at:at + BLOCK] = stamp(seed, n)
    if got[:len(expected)] != expected:
        bad = [b for b in range(blocks) if got[b * BLOCK:(b + 1) * BLOCK] != expected[b * BLOCK:(b + 1) * BLOCK]]
        print(f'not the state after write {k}: {len(bad)} blocks differ, first {bad[:8]}')
        sys.exit(1)
    print(f'prefix {k}')


if __name__ == '__main__':
    if sys.argv[1] == 'write':
        write(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        verify(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
