"""Charts per gateway over the last hour or day, drawn as SVG on the server (no chart library).

``series`` reads the store into per-bucket numbers with a few aggregate
queries; ``svg`` turns numbers into shapes (plain functions, no Django);
``views`` renders ``charts.html``, whose partial refreshes itself over htmx.
"""
