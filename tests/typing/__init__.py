"""Static typing tests: mypy over the case files in ``cases/`` (see ``cases/__init__.py``)."""
