"""The embedded demo study: digits shown to a simulated subject, written in real file formats.

Modules: ``study`` (NIfTI betas, atlas, BOLD + events, the task digits; ``make_demo``) and ``ephys``
(simulated Poisson units written as NWB).
"""

from data_adapters.demo.study import (
    DEMO_LABELS,
    DemoStimuli,
    DemoStudy,
    add_arguments,
    default_cache_dir,
    load_demo_stimuli,
    load_task_digits,
    make_demo,
    make_demo_study,
    run,
)

__all__ = [
    "DEMO_LABELS",
    "DemoStimuli",
    "DemoStudy",
    "add_arguments",
    "default_cache_dir",
    "load_demo_stimuli",
    "load_task_digits",
    "make_demo",
    "make_demo_study",
    "run",
]
