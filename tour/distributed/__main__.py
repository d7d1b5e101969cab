from tour.distributed import main

raise SystemExit(main())
