"""``python -m service.cli``: the ``memex`` command."""

from service.cli.main import main

main()
