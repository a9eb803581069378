"""``python -m grader`` is ``hw4grade`` (DESIGN section 7)."""

from grader.cli import main

raise SystemExit(main())
