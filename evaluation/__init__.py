"""Scoring detections: ROC AUC (metrics.py), the 3D-ROC measures (roc3d.py), tables (report.py), figures
(plots.py) and the field's result files, MATLAB and ENVI (export.py)."""
