"""`cryopipe view results/<run>`: a local web app (Bokeh server) to look at a run's stores.

Scatter of any two per-event quantities (log axes, colour by cut label, record kind, model score,
decision or flags (sure / unsure / ood), hand label) with histograms; click a point for its traces,
features, labels and scores; box/lasso selections with their count and mean trace; save a selection
as a cut (appended to a cuts file in the cut language) or hand-label it
(``results/<run>/hand_labels.zarr``). It never writes into a pipeline store.

`data` holds everything that does not need a browser (tested directly); `app` the Bokeh document;
`server` the local server.
"""
from .data import RunData

__all__ = ["RunData", "serve"]


def serve(*args, **kwargs):
    """See `cryopipe.view.server.serve` (imports Bokeh only when called)."""
    from .server import serve as _serve

    return _serve(*args, **kwargs)
