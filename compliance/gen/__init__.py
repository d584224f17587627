"""Generators of the compliance documents: ``python -m compliance.gen {soup,check,render}``."""
