"""``python -m modelserve`` runs the command-line interface."""

from modelserve.entry import main

main()
