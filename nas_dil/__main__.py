import sys

from nas_dil.cli import main

sys.exit(main())
