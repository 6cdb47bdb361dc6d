"""The version, in a module of its own so every part can name it without importing the package
(and the API).
"""

__version__ = "0.28.10"
USER_AGENT = f"mdl/{__version__}"
