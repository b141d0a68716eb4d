"""The names the CLI's options offer, here without torch so that `charrnn --help` needs none. The modules
that do the work key their tables by these (and check at import that they agree)."""

RUN_SORTS = ("name", "bpc", "written", "steps", "time", "size")  # charrnn.runs.SORT_KEYS
EXPORT_FORMATS = ("hf", "onnx", "html")  # charrnn.export.FORMATS
VIZ_FEATURES = ("line-position", "quotes", "brackets", "word-position", "space", "uppercase", "vowel",
                "punctuation")  # charrnn.viz.FEATURES
