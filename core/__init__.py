"""Pure logic shared by assets, resources and agents: parsing, chunking, ids, fusion.

Nothing in here talks to an external system or reads the environment; it is plain
functions and small classes that are cheap to unit-test.
"""
