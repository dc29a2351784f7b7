"""What a model file is, from its header, keys and shapes alone: the family table and the pure detection functions.

Below the catalog (which scans files and records what each one is) and the model
loaders (which build what was detected); it imports neither.
"""
