"""The Streamlit app in front of a serving endpoint; `sentiray ui` runs it.

`endpoint` holds everything that does not need Streamlit (settings, HTTP calls, batch scoring), so it is
tested without a browser; `app.py` is the Streamlit script.
"""

from __future__ import annotations

from pathlib import Path

APP_PATH = Path(__file__).with_name("app.py")

__all__ = ["APP_PATH"]
