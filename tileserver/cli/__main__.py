import sys

from tileserver.cli import main

sys.exit(main())
