"""The findings document: its schema, the validating loader, and the regression between two runs."""
