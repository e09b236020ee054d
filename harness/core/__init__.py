"""The base layer every package stands on: user errors and exit codes, result documents and
atomic writes, outputs replaced together, and the entry-point loading of user extensions."""
