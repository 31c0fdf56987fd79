"""``kubectl mlops``: a kubectl plugin for the five kinds (console script ``kubectl-mlops``).

Layout: ``kinds`` (names and aliases), ``world`` (the objects of a namespace, as plain dicts),
``tree`` / ``compare`` / ``explain`` / ``history`` (pure: data from objects), ``render`` (pure: text from
that data), ``actions`` (pure: the patches a request sends), ``client`` (all I/O: the apiserver through
the ``kubernetes`` library and the user's kubeconfig), ``main`` (argparse and the verbs). Docs: docs/cli.md.
"""
