"""`python3 -m guestagent.init`: the fast path from the initramfs (no CLI discovery imports)."""

# First: timeline's import time is the interpreter's start.
from guestagent import startgc, timeline

startgc.hold()  # init resumes collection before it starts the agent
from guestagent.init.main import main  # noqa: E402

timeline.stamp("init_python", timeline.STARTED)
timeline.stamp("init_imported")
raise SystemExit(main())
