"""The shared conventions audit reports no findings (when shared/ sits beside the checkout)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import ROOT

AUDIT = ROOT.parent / "shared" / "tools" / "audit_curriculum.py"


@pytest.mark.skipif(not AUDIT.exists(), reason="../shared/tools/audit_curriculum.py is not beside this checkout")
def test_conventions_audit_is_clean() -> None:
    run = subprocess.run([sys.executable, str(AUDIT), str(ROOT)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
