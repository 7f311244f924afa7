# First: timeline's import time is the interpreter's start.
from guestagent import startgc, timeline  # noqa: F401

startgc.hold()  # `serve` resumes collection once ready, any other command before it runs
from guestagent.cli import main  # noqa: E402

raise SystemExit(main())
