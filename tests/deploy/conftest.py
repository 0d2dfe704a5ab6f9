"""Shared by the deployment tests: the client tests' harness (strata_harness, cluster_harness)
is importable from here."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "clients"))
