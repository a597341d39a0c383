"""The interactive API pages, served without internet: ``/`` and ``/docs`` (Swagger UI), ``/redoc`` (ReDoc).

FastAPI's own pages load their scripts from a CDN and stay blank offline. Swagger UI's files come from
``swagger-ui-bundle-v2``, ReDoc's one script from ``fastapi-offline``, which ships it.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

REDOC_ASSETS = "/redoc-assets"


DOCS_ASSETS = "/docs-assets"


def install(app: FastAPI) -> None:
    """Add ``GET /``, ``GET /docs`` and ``GET /redoc`` (not in the OpenAPI document)."""
    import fastapi_offline
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles
    from swagger_ui_bundle import swagger_ui_path

    app.mount(DOCS_ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")
    static = Path(fastapi_offline.__file__).parent / "static"
    app.mount(REDOC_ASSETS, StaticFiles(directory=str(static)), name="redoc-assets")

    def swagger(title: str):
        async def page() -> HTMLResponse:
            return get_swagger_ui_html(openapi_url=app.openapi_url, title=f"{app.title} — {title}",
                                       swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                                       swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
                                       swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png")
        return page

    async def redoc() -> HTMLResponse:
        # with_google_fonts=False: the fonts link is the page's only other internet address
        return get_redoc_html(openapi_url=app.openapi_url, title=f"{app.title} — ReDoc",
                              redoc_js_url=f"{REDOC_ASSETS}/redoc.standalone.js",
                              redoc_favicon_url=f"{REDOC_ASSETS}/favicon.png", with_google_fonts=False)

    app.add_api_route("/", swagger("try it"), methods=["GET"], include_in_schema=False)
    app.add_api_route("/docs", swagger("Swagger UI"), methods=["GET"], include_in_schema=False)
    app.add_api_route("/redoc", redoc, methods=["GET"], include_in_schema=False)
