"""``python -m royal``: the same as the ``royal`` command."""

from royal.cli import main

main()
