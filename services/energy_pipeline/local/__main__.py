import sys

from energy_pipeline.local.cli import main

sys.exit(main())
