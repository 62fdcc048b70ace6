from latentlm.cli import main

raise SystemExit(main())
