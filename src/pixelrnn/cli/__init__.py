"""The command line: ``pixelrnn COMMAND`` (main.py), its argument types, the demo and model cards."""
