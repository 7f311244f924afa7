"""`python3 -m guestagent.init`: the fast path from the initramfs (no CLI discovery imports)."""

from guestagent.init.main import main

raise SystemExit(main())
