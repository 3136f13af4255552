"""tinyslm: tiny language models compiled to bit-exact C for microcontrollers and edge boards."""
__version__ = "0.1.0"
