"""Where the plugin keeps its state: ``config.stash`` keys (never private attributes)."""

from __future__ import annotations

import pytest

SESSION_KEY = pytest.StashKey["object"]()  # the run's one ClaimSession
RESULTS_KEY = pytest.StashKey[dict]()  # claim id -> result dict, in evaluation order
PLACEMENT_KEY = pytest.StashKey[dict]()  # device, dtype, batch size and backend of the run (checked at configure)
PENDING_KEY = pytest.StashKey["object"]()  # the run's outputs (findings, HTML), put in place together at the end
CLAIMS_RUN_KEY = pytest.StashKey[bool]()  # whether the session selected claims (set at session finish)
