"""Plexus's benchmarks: ``python -m benchmarks.NAME [--quick]``; each prints its
figures as a table and as one JSON line (``BENCH {...}``)."""
