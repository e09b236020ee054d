"""Head patching: head specs, source capture and alignment, patch modes and the patch hooks."""
