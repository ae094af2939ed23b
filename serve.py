"""LoopLens server: ``python -m backend app`` (or ``streamlit run serve.py``) serves app.py, warmed up first.

Before the server accepts a connection it imports everything the pages use, loads the default model and traces
the first view's question (``pages.common.warm_up``), so the first browser session draws its first chart from
memory instead of waiting for imports, a model load and a run.  ``streamlit run app.py`` still works: it does the
same work in the first session.  Streamlit options (``--server.port`` ...) are passed as to ``streamlit run``.

``st.App`` (Streamlit's ASGI entry point with start-up hooks) is marked experimental by Streamlit; should it change,
``streamlit run app.py`` keeps serving the app, only without the warm start.
"""
from __future__ import annotations

from contextlib import asynccontextmanager

import streamlit as st

from pages import common


@asynccontextmanager
async def warm_start(_app):
    times = common.warm_up()
    print("LoopLens warmed up: " + ", ".join(f"{k} {v:.1f} s" if isinstance(v, float) else f"{k}: {v}"
                                             for k, v in times.items()), flush=True)
    yield


app = st.App("app.py", lifespan=warm_start)
