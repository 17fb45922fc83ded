import sys

from salseg.cli import main

sys.exit(main())
