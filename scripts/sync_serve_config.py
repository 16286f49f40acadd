#!/usr/bin/env python3
"""Repository maintenance: copy serve/config.yaml into the Helm chart and the kustomize bases.

Run from a checkout (`make sync-serve-config`, or `python scripts/sync_serve_config.py [--check]`); it
edits files of the repository, so it is not part of the installed `sentiray` command. `--check` only
lists stale copies and exits 1 if there are any (a unit test does the same check).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="Only report stale copies (exit 1 if any)")
    parser.add_argument("--repo", type=Path, default=REPO, help="Repository root (default: this checkout)")
    args = parser.parse_args(argv)
    # The checkout's own sentiray, whether or not (or whichever version) is installed.
    sys.path.insert(0, str(args.repo))
    from sentiray.kube.serveconfig import sync

    stale = sync(args.repo, check=args.check)
    for path in stale:
        print(f"{'stale' if args.check else 'wrote'}: {path.relative_to(args.repo)}")
    if not stale:
        print("the Kubernetes copies of serve/config.yaml are up to date")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
