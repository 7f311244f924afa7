from guestagent import timeline  # first: its import time is the interpreter's start  # noqa: F401
from guestagent.cli import main

raise SystemExit(main())
