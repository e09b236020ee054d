"""Bounds that a writer and every reader of our documents share (one definition: anything the
claims accept, the findings schema reads back)."""

MAX_COUNT = 10**9  # seeds, top_k, prompt and sample counts: integers in [0, MAX_COUNT]
MAX_ID_LENGTH = 100  # a claim id: plot file names are built from it (file systems allow 255 bytes)
MAX_RANDOM_HEADS = 1000  # random-head controls per claim (each is a full patched generation)
