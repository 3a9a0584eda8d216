"""Declarative infrastructure and the code that renders or runs it."""
