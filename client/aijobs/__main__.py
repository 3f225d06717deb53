"""``python -m aijobs``: the same as the ``aijobs`` command."""

from .cli import main

raise SystemExit(main())
