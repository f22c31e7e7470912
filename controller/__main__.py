"""``python -m controller``: the controller (:mod:`controller.main`)."""

from .main import main

main()
