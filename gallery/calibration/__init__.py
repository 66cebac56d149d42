"""Learning the decision rule from labelled photos' embeddings: simulation, rules, fitting, metrics.

Pure numpy over embeddings and labels; the Gallery facade and CLI embed the photos.
"""
