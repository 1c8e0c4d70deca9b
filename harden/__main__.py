"""python -m harden: the harden command."""

from harden.cli import main

raise SystemExit(main())
