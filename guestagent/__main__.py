from guestagent.cli import main

raise SystemExit(main())
