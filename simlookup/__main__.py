from simlookup.cli import main

raise SystemExit(main())
