"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), FastAPI's habitual addresses, served without internet.

FastAPI's own pages load their scripts from a CDN and stay blank offline. Swagger UI's files come from
``swagger-ui-bundle-v2`` (already mounted for ``/`` by :mod:`speechlm.serving.app`), ReDoc's one script
from ``fastapi-offline``, which ships it.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

REDOC_ASSETS = "/redoc-assets"


def install(app: FastAPI, swagger_assets: str) -> None:
    """Add ``GET /docs`` and ``GET /redoc`` (not in the OpenAPI document, like ``/``).

    Args:
        swagger_assets: the URL prefix where Swagger UI's files are mounted.
    """
    import fastapi_offline
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles

    static = Path(fastapi_offline.__file__).parent / "static"
    app.mount(REDOC_ASSETS, StaticFiles(directory=str(static)), name="redoc-assets")

    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url, title=f"{app.title} — Swagger UI",
                                   swagger_js_url=f"{swagger_assets}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{swagger_assets}/swagger-ui.css",
                                   swagger_favicon_url=f"{swagger_assets}/favicon-32x32.png")

    async def redoc() -> HTMLResponse:
        # with_google_fonts=False: the fonts link is the page's only other internet address
        return get_redoc_html(openapi_url=app.openapi_url, title=f"{app.title} — ReDoc",
                              redoc_js_url=f"{REDOC_ASSETS}/redoc.standalone.js",
                              redoc_favicon_url=f"{REDOC_ASSETS}/favicon.png", with_google_fonts=False)

    app.add_api_route("/docs", docs, methods=["GET"], include_in_schema=False)
    app.add_api_route("/redoc", redoc, methods=["GET"], include_in_schema=False)
