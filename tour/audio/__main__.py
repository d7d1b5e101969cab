from tour.audio import main

raise SystemExit(main())
