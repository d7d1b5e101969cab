from tour.tools.gpu_check import main

raise SystemExit(main())
