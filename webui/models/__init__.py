"""The model manager, the one owner of loaded weights, and the loaders it uses."""
