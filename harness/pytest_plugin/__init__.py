"""The pytest plugin: claims options, collection of claim files, the shared session, pytest-html columns."""
