from tour.compile import main

raise SystemExit(main())
