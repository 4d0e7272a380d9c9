"""``python -m qamrec.cli``: the command line."""

from qamrec.cli import main

main()
