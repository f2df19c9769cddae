"""``pixelrnn serve``: a local page to look at a model (draw, complete, sample, see its surprise).

``catalog`` (the models on offer and their example images), ``jobs`` (sampling in worker threads,
streamed row by row, cancellable), ``pictures`` (values to PNG), ``server`` (the FastAPI app),
``static/`` (the page: plain HTML, CSS and JavaScript, nothing fetched from the internet).
Needs the optional extra: ``pip install "pixelrnn[app]"``.
"""
