"""charrnn: a character-level recurrent language model you drive from the shell."""

__version__ = "0.1.0"
