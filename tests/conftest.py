"""The test suite's own settings (the project's conftest.py, one folder up, is also the claims'):
runs are never read from or stored in the user's run cache; the tests of the cache give it a
folder of their own (``monkeypatch.setenv("CAUSAL_HEADS_RUN_CACHE", ...)``)."""

import os

os.environ["CAUSAL_HEADS_RUN_CACHE"] = "off"
