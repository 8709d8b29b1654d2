"""examples/train_mnist.py trains on the bundled sample and reaches the accuracy the issue promises."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "train_mnist.py"


def test_train_mnist_example_reaches_090() -> None:
    if not EXAMPLE.is_file():
        pytest.skip(f"{EXAMPLE} is not part of this installation")
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    result = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=300, check=True, env=env
    )
    last = result.stdout.strip().splitlines()[-1]
    match = re.fullmatch(r"test accuracy: (0\.\d{3})", last)
    assert match, result.stdout
    assert float(match.group(1)) >= 0.90
