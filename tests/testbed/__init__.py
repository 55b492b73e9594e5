"""Tests of the e2e test bed itself that need neither root nor an API server."""
