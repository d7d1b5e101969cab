from tour.precision import main

raise SystemExit(main())
