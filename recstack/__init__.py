"""RecStack's composition root: the `recstack` CLI (`recstack.cli`) and the
processes it starts (`processes`). The top layer; nothing imports it but
benchmarks and tests.
"""

__version__ = "0.1.0"
