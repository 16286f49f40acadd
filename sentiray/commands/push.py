"""`sentiray push ARTIFACT REPO`: publish a verified artifact, model card included, to the Hub."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "push",
        help="publish an artifact (with its model card) to the Hugging Face Hub",
        description="Verify the artifact against its sentiray.json, then upload the whole folder to a Hub "
        "model repository (created if missing) as one commit. The token comes from HF_TOKEN (or a saved "
        "`hf auth login`); HF_ENDPOINT selects another Hub. Nothing local changes, whether or not the "
        "push succeeds.",
    )
    parser.add_argument("artifact", metavar="ARTIFACT", help="Artifact folder or URI (s3://...)")
    parser.add_argument("repo", metavar="REPO", help="Hub repository id, NAMESPACE/NAME")
    parser.add_argument("--private", action="store_true", help="Create the repository as private")
    parser.add_argument("--revision", default=None, help="Branch to commit to (default: main)")
    parser.add_argument("--message", default=None, help="Commit message (default: base model and accuracy)")
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    from sentiray.hub import push_artifact

    result = push_artifact(
        args.artifact, args.repo, private=args.private, revision=args.revision, commit_message=args.message
    )
    print(f"pushed {result.files} files to {result.repo_url}")
    print(f"commit: {result.commit_url}")
    return 0
