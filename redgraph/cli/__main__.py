"""``python -m redgraph.cli``."""

from redgraph.cli import main

main()
