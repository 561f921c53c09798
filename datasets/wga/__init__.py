"""wga dataset."""
