"""LoopLens pages (UI only). app.py lists them with st.navigation; common.py holds shared UI helpers."""
