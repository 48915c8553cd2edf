import sys

from vig.cli import main

sys.exit(main())
