"""Test helpers for plugin authors, registered as the ``lash`` pytest plugin (``pytest11``).

Importing this module has no side effects on test suites that do not use its fixtures.
"""

from __future__ import annotations
