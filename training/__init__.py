"""edge-cm training stack (install with ``pip install edge-cm[train]``): data, models, training loops."""
