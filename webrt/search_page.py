"""`webrt build-site` with an embedding model: the search page (web/demo/search.html, rendered as
SITE/search.html). It embeds the bundled documents (web/demo/search_docs.js) in a Web Worker and
ranks them against the visitor's query; its modules and style are in the app folder."""

from __future__ import annotations

from pathlib import Path

PAGE = "search.html"


def write_search_page(staging: Path, app: str, app_source: dict[str, bytes]) -> dict[str, str]:
    """Write search.html into staging; returns the integrity of what it wrote."""
    from .site import render_page, sri

    page = render_page(app, app_source, "demo/search.html", script="demo/search.js",
                       search_css=sri(app_source["demo/search.css"]))
    (staging / PAGE).write_bytes(page)
    return {PAGE: sri(page)}
