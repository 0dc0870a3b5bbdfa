"""Code that a child interpreter runs first to behave like the core install: the packages of
the `train` extra (and JAX) cannot be imported, as if they were not installed."""

BLOCK_TF = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "tf_keras", "jax", "mtcnn"):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
sys.meta_path.insert(0, Block())
"""
