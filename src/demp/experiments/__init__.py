"""The experiment app on top of the library (the ``demp`` command).

Data, models, the training harness, ``demp bench``, ``demp analyze``, reports and the
command line. The library (everything outside this package) never imports it.
"""
