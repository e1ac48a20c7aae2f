"""The ``demp`` command: ``train``, ``report``, ``demo``."""
