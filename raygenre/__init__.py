"""raygenre: distributed reproduction of a GTZAN genre-classifier comparison on Ray."""

__version__ = "0.1.0"
