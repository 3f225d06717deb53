"""Write the initial data into a fresh Firestore emulator and export it to ``emulator-export/``.

``scripts/dev`` and the tests start the emulator from that export.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scripts.stack import ROOT, Stack

EXPORT = ROOT / "emulator-export"


def main() -> None:
    stack = Stack(import_dir=None, log_dir=ROOT / ".run" / "seed-logs")
    stack.start_firestore()
    try:
        os.environ.update(stack.env())
        from shared.catalog import DEFAULT_CATALOG, catalog_ref

        catalog_ref().set(DEFAULT_CATALOG)
        shutil.rmtree(EXPORT, ignore_errors=True)
        stack.export(EXPORT)
        print(f"seeded: config/catalog; exported to {EXPORT.relative_to(ROOT)}/")
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
