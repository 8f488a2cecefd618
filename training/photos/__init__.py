"""Photos in: detection (MediaPipe BlazePose), SMPLify-style fitting on any SMPL-format body, and the synthetic
measurement of both. `python -m training prepare --images DIR --out DIR` without `--fits` runs them (pipeline.py).
"""
