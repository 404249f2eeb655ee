"""One module per fixture directory; each exposes ``run(fixture_dir) -> Iterable[Comparison]``.

Modules build their model from the fixture's ``config.json`` only (never from the shipped sizes).
"""
