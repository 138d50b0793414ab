"""torch stays optional: ``import fastlinear`` (and its nn library) must not import torch."""

from __future__ import annotations

import os
import subprocess
import sys


def test_import_fastlinear_does_not_import_torch():
    code = ("import sys, fastlinear, fastlinear.nn, fastlinear.backends\n"
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)\n")
    env = dict(os.environ, FASTLINEAR_COMPILE_NOTICE="0")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
