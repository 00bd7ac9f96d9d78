"""libfraud's benchmark harnesses; `python -m bench` writes the side-by-side report (bench/report.py)."""
