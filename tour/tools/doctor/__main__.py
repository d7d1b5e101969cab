from tour.tools.doctor.cli import main

raise SystemExit(main())
