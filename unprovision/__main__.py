"""``python -m unprovision ...``: the operator CLI (see ``unprovision.cli``)."""

from unprovision.cli import main

raise SystemExit(main())
