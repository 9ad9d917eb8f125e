"""The AEAD of private caches, measured: why AES-256-GCM (``cryptography``).

Usage::

    python3 benchmarks/aead.py [--frame-kib 90] [--seconds 2]

Encrypts and decrypts one frame-sized buffer (default 90 KiB: a 256 KiB chunk
compressed about 3x) in a loop on one core with each candidate, and prints MB/s
and CPU-seconds per GB (``time.process_time``), side by side with SHA-256 over
the same bytes (what every read already pays per shard byte) as the reference:

- AES-256-GCM, ``cryptography`` (what :func:`storage_network.coding.sealing.seal` uses);
- XChaCha20-Poly1305, ``pynacl`` (libsodium);
- AES-256-GCM-SIV, ``cryptography`` (RFC 8452, nonce-misuse resistant);
- the synthetic nonce alone: HMAC-SHA256 of the frame (``hmac``), and keyed BLAKE2b
  (``hashlib``), the alternative;
- ``seal`` and ``unseal`` as the push and the gateway call them (nonce + GCM).

Nothing is asserted; not part of pytest.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.ciphers.aead import AESGCM, AESGCMSIV  # noqa: E402
from nacl.bindings import (  # noqa: E402
    crypto_aead_xchacha20poly1305_ietf_decrypt,
    crypto_aead_xchacha20poly1305_ietf_encrypt,
)

from storage_network.coding.sealing import seal, unseal  # noqa: E402


def rate(job: Callable[[], object], size: int, seconds: float) -> tuple[float, float]:
    """MB/s and CPU-seconds per GB of running ``job`` (``size`` bytes each) for ``seconds``."""
    count = 0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    while time.perf_counter() - wall0 < seconds:
        job()
        count += 1
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    done = count * size
    return done / wall / 1e6, cpu / (done / 1e9)


def main() -> None:
    """Measure every candidate and print the table."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--frame-kib", type=int, default=90)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    frame = os.urandom(args.frame_kib * 1024)
    key, aad = os.urandom(32), os.urandom(32)
    gcm, siv = AESGCM(key), AESGCMSIV(key)
    n12, n24 = os.urandom(12), os.urandom(24)
    gcm_ct = gcm.encrypt(n12, frame, aad)
    siv_ct = siv.encrypt(n12, frame, aad)
    xc_ct = crypto_aead_xchacha20poly1305_ietf_encrypt(frame, aad, n24, key)
    sealed = seal(key, frame, aad)
    jobs: list[tuple[str, Callable[[], object]]] = [
        ("SHA-256 (reference)", lambda: hashlib.sha256(frame).digest()),
        ("AES-256-GCM encrypt", lambda: gcm.encrypt(n12, frame, aad)),
        ("AES-256-GCM decrypt", lambda: gcm.decrypt(n12, gcm_ct, aad)),
        ("XChaCha20-Poly1305 encrypt",
         lambda: crypto_aead_xchacha20poly1305_ietf_encrypt(frame, aad, n24, key)),
        ("XChaCha20-Poly1305 decrypt",
         lambda: crypto_aead_xchacha20poly1305_ietf_decrypt(xc_ct, aad, n24, key)),
        ("AES-256-GCM-SIV encrypt", lambda: siv.encrypt(n12, frame, aad)),
        ("AES-256-GCM-SIV decrypt", lambda: siv.decrypt(n12, siv_ct, aad)),
        ("HMAC-SHA256 (the nonce)", lambda: hmac.new(key, frame, "sha256").digest()),
        ("keyed BLAKE2b-96 (alternative)",
         lambda: hashlib.blake2b(frame, key=key, digest_size=12).digest()),
        ("seal (nonce + AES-256-GCM)", lambda: seal(key, frame, aad)),
        ("unseal (AES-256-GCM)", lambda: unseal(key, sealed, aad)),
    ]
    print(f"{args.frame_kib} KiB frames, one core, {args.seconds:.0f} s each")
    print(f"{'':32} {'MB/s':>8} {'CPU-s/GB':>9} {'vs SHA-256':>10}")
    ref = None
    for name, job in jobs:
        mbs, cpu_gb = rate(job, len(frame), args.seconds)
        ref = ref or mbs
        print(f"{name:32} {mbs:8.0f} {cpu_gb:9.3f} {mbs / ref:9.2f}x")


if __name__ == "__main__":
    main()
