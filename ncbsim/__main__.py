"""``python -m ncbsim``: the same as the ``ncbsim`` console script."""

import sys

from ncbsim.cli import main

sys.exit(main())
