"""Simulated participants ("bots"): the top layer, so they may use every app below (generation backends for
persona opinions, analysis reward models for rating). ``client`` speaks the browser's protocol, ``sources`` writes
their opinions, ``policies`` rates the statements, and ``manage.py run_bots`` runs them against a server."""
