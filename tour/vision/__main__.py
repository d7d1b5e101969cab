from tour.vision import main

raise SystemExit(main())
