from synthdistill.cli import main

raise SystemExit(main())
