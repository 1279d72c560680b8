"""PAL trainer: learns an embedding from the server's similarity graph and publishes it.

It talks to the server only over HTTP (:mod:`trainer.client`); shared wire formats come from
:mod:`pal.wire`. Entry points: :func:`trainer.loop.run` and :func:`trainer.loop.main`.
"""
