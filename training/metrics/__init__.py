"""Evaluation metrics (docs/evaluation.md): `fid` (FID / KID), `pose_accuracy` (part-map mIoU), `consistency` (view,
pose and temporal consistency by surface correspondence), `protocol` (what is rendered and measured), `report`
(results.json / results.md). `python -m training evaluate` (training/evaluate.py) runs them."""
