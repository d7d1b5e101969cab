from tour.export import main

raise SystemExit(main())
