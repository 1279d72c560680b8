"""PAL: Positive Active Learning as a labelling service.

`pal` holds what the server and the trainer share (wire formats, the knowledge graph,
evaluation metrics) and the `pal` command line.
"""

__version__ = "0.1.0"
