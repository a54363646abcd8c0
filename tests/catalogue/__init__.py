"""The bad-input catalogue (issue 23): one parametrised test per user mistake.

Each family (and core, and the CLI) has a module here, ``test_<area>.py``, holding a list
``MISTAKES`` of :class:`Mistake` and one parametrised test that runs them. ``test_count.py``
checks the catalogue's size and that every id is unique.
"""
