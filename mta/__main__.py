"""python -m mta: the mta command."""

from mta.cli import main

raise SystemExit(main())
