"""`sentiray ui`: the Streamlit app in front of a serving endpoint (`streamlit run` with safe settings)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from sentiray.errors import ConfigError


def register(subparsers: Any) -> None:
    from sentiray.ui.endpoint import DEFAULT_ENDPOINT, ENV_ENDPOINT, ENV_TOKEN, ENV_TOKEN_FILE

    parser = subparsers.add_parser(
        "ui",
        help="run the Streamlit app against a serving endpoint",
        description="Serve the Streamlit app: classify a review, score a CSV or text file, show the model's "
        f"/info. The endpoint's bearer token, if it needs one, is read from {ENV_TOKEN} or the file named "
        f"by {ENV_TOKEN_FILE}.",
    )
    parser.add_argument(
        "--endpoint",
        default=os.environ.get(ENV_ENDPOINT) or DEFAULT_ENDPOINT,
        help=f"Base URL of the serving endpoint (default: ${ENV_ENDPOINT}, else {DEFAULT_ENDPOINT})",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="Address to listen on (default: 127.0.0.1; 0.0.0.0 in a container)",
    )
    parser.add_argument("--port", type=int, default=8501, help="Port to listen on (default: 8501)")
    parser.add_argument(
        "--max-upload-mb", type=int, default=50, help="Largest batch file accepted (default: 50)"
    )
    parser.set_defaults(handler=_handle)


def streamlit_command(args: argparse.Namespace) -> list[str]:
    """The `streamlit run` command line: no usage stats, no file watcher, no tracebacks shown to users."""
    from sentiray.ui import APP_PATH

    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP_PATH),
        f"--server.address={args.host}",
        f"--server.port={args.port}",
        "--server.headless=true",
        "--browser.gatherUsageStats=false",
        "--server.fileWatcherType=none",
        "--server.runOnSave=false",
        "--global.developmentMode=false",
        "--client.toolbarMode=viewer",
        "--client.showErrorDetails=none",
        "--server.enableXsrfProtection=true",
        f"--server.maxUploadSize={args.max_upload_mb}",
        "--server.showEmailPrompt=false",
    ]


def _handle(args: argparse.Namespace) -> int:
    from sentiray.ui.endpoint import ENV_ENDPOINT

    endpoint = args.endpoint.strip().rstrip("/")
    if not endpoint.startswith(("http://", "https://")):
        raise ConfigError(f"endpoint: {args.endpoint!r} is not an http:// or https:// URL")
    if not 1 <= args.port <= 65535:
        raise ConfigError(f"port: {args.port} is not a TCP port (1-65535)")
    if args.max_upload_mb < 1:
        raise ConfigError(f"max_upload_mb: {args.max_upload_mb} must be at least 1")
    try:
        import streamlit  # noqa: F401
    except ImportError as e:
        raise ConfigError("the UI needs Streamlit: pip install 'sentiray[ui]'") from e
    # The endpoint goes to the app through the environment (so does the token, never on a command line).
    env = {**os.environ, ENV_ENDPOINT: endpoint}
    print(f"sentiray ui: http://{args.host}:{args.port} -> {endpoint}", flush=True)
    cmd = streamlit_command(args)
    sys.stdout.flush()
    # exec: in a container Streamlit becomes the process that receives SIGTERM.
    os.execve(cmd[0], cmd, env)
    return 0  # pragma: no cover - execve does not return
