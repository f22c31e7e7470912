"""``python -m agents``: the host agent (:mod:`agents.main`)."""

from .main import main

main()
