from tour.nlp import main

raise SystemExit(main())
