"""`python3 -m guestagent.init`: the fast path from the initramfs (no CLI discovery imports)."""

from guestagent import timeline  # first: its import time is the interpreter's start
from guestagent.init.main import main

timeline.stamp("init_python", timeline.STARTED)
timeline.stamp("init_imported")
raise SystemExit(main())
