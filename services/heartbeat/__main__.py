"""`python -m services.heartbeat`: watermark heartbeats for every source partition (services/heartbeat/beat.py)."""

import sys

from services.heartbeat.beat import main

if __name__ == "__main__":
    sys.exit(main())
