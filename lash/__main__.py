"""``python -m lash``: the ``lash`` command, for when the console script is not on ``PATH``
(a virtual environment that is not activated, a subprocess started with ``sys.executable``)."""

from lash.cli import main

if __name__ == "__main__":  # imported (pkgutil.walk_packages, documentation tools): nothing runs
    main()
