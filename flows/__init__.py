"""Prefect flows over the DVC pipeline. Thin by design: they run DVC and the `ul` library and report
what happened; the library never imports them.

    flows/pipeline.py  ul-pipeline   one task per DVC stage (`dvc repro <stage>`), then `dvc push`
    flows/sweep.py     ul-sweep      a grid of queued `dvc exp run -S ...`, a table and a rate-distortion plot
    flows/watch.py     ul-watch      pin a lakeFS branch's new head commit into params and run ul-pipeline
    flows/serve.py     all three with `prefect.serve` on one box (prefect.yaml is the worker route)

Run them from the checkout's root as modules (`python -m flows.pipeline preset=ci`), which puts the
checkout on sys.path; Prefect loads the `flows/<file>.py:<flow>` entrypoints of prefect.yaml and of
`flows.serve` with its working directory (the checkout) on sys.path, so `from flows import common`
resolves there too. `ul` is the installed (editable) library.
"""
