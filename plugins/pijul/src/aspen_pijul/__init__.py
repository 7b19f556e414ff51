"""aspen-pijul: a Pijul-style patch-theory version control system.

:mod:`aspen_pijul.model` is the pure model (graph, changes, channels, output, record);
:mod:`aspen_pijul.repo` is the on-disk working copy; :mod:`aspen_pijul.cli` is
``aspen pijul …``.
"""
