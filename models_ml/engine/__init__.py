"""The machine-learning library of medrlhf.

Nothing below this package imports Django. Importing the package itself is
cheap: torch, diffusers and transformers are imported by the submodules that
need them, so the web process can use the Django-free readers without them.
"""
