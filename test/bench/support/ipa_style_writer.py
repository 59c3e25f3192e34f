#!/usr/bin/python3
"""The IPA-style baseline of `npm run bench -- image`: what ironic-python-agent's standby extension does for a
raw image (requests with stream=True, 1 MiB chunks, the checksum updated per chunk, each chunk written to the
device, then fsync), so our agent is compared with the writer it replaces. Usage: URL DEVICE ALGO EXPECTED.
Exits 1 on a checksum mismatch, so a broken baseline never yields a ratio."""
import hashlib
import os
import sys

import requests

url, device, algo, expected = sys.argv[1:5]
h = hashlib.new(algo)
written = 0
with requests.get(url, stream=True, timeout=60) as resp:
    resp.raise_for_status()
    fd = os.open(device, os.O_WRONLY)
    try:
        for chunk in resp.iter_content(chunk_size=1024 * 1024):
            h.update(chunk)
            os.write(fd, chunk)
            written += len(chunk)
        os.fsync(fd)
    finally:
        os.close(fd)
if h.hexdigest() != expected:
    print(f"checksum mismatch: {h.hexdigest()} != {expected}", file=sys.stderr)
    sys.exit(1)
print(f"written {written}")
