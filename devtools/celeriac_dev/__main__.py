import sys

from celeriac_dev.cli import main

sys.exit(main())
