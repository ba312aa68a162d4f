"""``python -m faceledger``: the same as the ``faceledger`` command."""

from faceledger.cli.main import main

main()
