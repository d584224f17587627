"""The signed offline release bundle: build (``python -m bundle build``), verify, keys.

See ``bundle/README.md`` and ``bundle/build.py`` for the layout.
"""
