"""``python -m customization.ganeti_os <action>``: what the OS definition's shims run."""

import sys

from customization.ganeti_os.actions import main

sys.exit(main())
