"""Test modules of this folder that need torch at import: not collected where torch is missing (their
subjects, the worker and torch-object clauses, are skipped there as not applicable)."""

from __future__ import annotations

import importlib.util

collect_ignore = (
    []
    if importlib.util.find_spec("torch") is not None
    else [
        "test_trust_data_order.py",
        "test_trust_lasting_workers.py",
        "test_trust_unpicklable_sample.py",
        "test_trust_worker_errors.py",
    ]
)
