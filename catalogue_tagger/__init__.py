"""catalogue-tagger: a streaming batch tagger for music catalogues."""

__version__ = "0.1.0"
