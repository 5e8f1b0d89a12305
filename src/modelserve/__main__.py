"""``python -m modelserve`` runs the command-line interface."""

from modelserve.cli import main

main()
