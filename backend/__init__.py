"""LoopLens backend: looped-model loading, tracing, metrics, items, sweeps and reports (no Streamlit here)."""
import os as _os

# bfloat16 matmuls can kill the process on CPUs with AMX that the VM does not allow (see docs); capping oneDNN's
# ISA before torch starts avoids it and changes nothing for float32.  A user's explicit setting wins.
_os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
