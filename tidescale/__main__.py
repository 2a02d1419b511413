import sys

from tidescale.cli import main

sys.exit(main())
