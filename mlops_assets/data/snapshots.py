"""Content fingerprints of frames: the same rows and values give the same data snapshot id."""

from __future__ import annotations

import hashlib

import pandas as pd


def frame_fingerprint(frame: pd.DataFrame) -> str:
    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()[:16]
