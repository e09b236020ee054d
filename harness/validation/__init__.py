"""Ground-truth validation: the whole pipeline run on models whose mechanism is known.

``causal-heads validate`` (:mod:`harness.cli.validate`) draws independent prompt sets from each
shipped ground-truth model (:mod:`harness.model.groundtruth`), runs the screens, the sweep, the
claims it writes and hand claims on each (:mod:`.run`), reads every claim against the model's
``truth.json`` (:mod:`.truth`) and reports recall, power and false-positive rates with exact
intervals (:mod:`.summary`, :mod:`.record`).
"""
