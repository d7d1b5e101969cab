from tour.lightning import main

raise SystemExit(main())
