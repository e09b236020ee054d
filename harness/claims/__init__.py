"""Claims: the claim spec and its TOML front end, the run session, controls, verdicts and results."""
