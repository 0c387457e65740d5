from mdbd.cli import main

raise SystemExit(main())
