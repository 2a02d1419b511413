import sys

from tidescale.entry import main

sys.exit(main())
