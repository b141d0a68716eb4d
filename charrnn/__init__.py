"""charrnn: a character-level recurrent language model you drive from the shell, or from Python.

    import charrnn
    lm = charrnn.load("runs/tinyshakespeare")
    print(lm.generate("ROMEO:", length=300, temperature=0.8, seed=1))

`load`, `train` and `LanguageModel` live in charrnn.api, imported on first use: `import charrnn` loads no
torch, so the command's --help and the llm plugin start at once.
"""

__version__ = "0.1.0"
__all__ = ["LanguageModel", "load", "train", "__version__"]


def __getattr__(name: str):
    if name in __all__[:3]:
        from charrnn import api

        return getattr(api, name)
    raise AttributeError(f"module 'charrnn' has no attribute {name!r}")
