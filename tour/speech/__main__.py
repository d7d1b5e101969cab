from tour.speech import main

raise SystemExit(main())
