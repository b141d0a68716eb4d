"""charrnn: a character-level recurrent language model you drive from the shell, or from Python.

    import charrnn
    lm = charrnn.load("runs/tinyshakespeare")
    print(lm.generate("ROMEO:", length=300, temperature=0.8, seed=1))

`load`, `train` and `LanguageModel` live in charrnn.api, imported on first use: `import charrnn` loads no
torch, so the command's --help and the llm plugin start at once.
"""

__version__ = "0.1.0"  # the one source: pyproject reads it (setuptools dynamic version)
# The name on the package index (`pip install charrnn-lm`): `charrnn` there is an unrelated 2017 project.
# The command and the import name stay `charrnn`, since both are what users type.
DISTRIBUTION = "charrnn-lm"
__all__ = ["LanguageModel", "load", "train", "__version__"]


def install_command(extra: str = "") -> str:
    """What a user types to install charrnn, with an optional extra: pip install 'charrnn-lm[onnx]'."""
    return f"pip install '{DISTRIBUTION}[{extra}]'" if extra else f"pip install {DISTRIBUTION}"


def __getattr__(name: str):
    if name in __all__[:3]:
        from charrnn import api

        return getattr(api, name)
    raise AttributeError(f"module 'charrnn' has no attribute {name!r}")
