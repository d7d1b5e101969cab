from tour.generate import main

raise SystemExit(main())
