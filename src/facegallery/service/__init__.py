"""facegallery as an HTTP service (FastAPI on uvicorn) with a web page: ``facegallery serve``.

Needs the ``service`` extra: ``pip install 'facegallery[service]'``.
"""
