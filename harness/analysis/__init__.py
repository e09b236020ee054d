"""Analyses built on the engine: the seed's patching run, the all-heads sweep, the attention screen, calibration, benchmarks and the evidence job."""
