"""Generating a claims run's plan somewhere other than this process: the Ray backend.

The unit of work is a job of the plan (:mod:`harness.claims.plan`): a baseline and some of its
arms. Workers generate; everything statistical (corrections, verdicts, findings, reports) stays
with the driver and is made exactly as in a local run.
"""
