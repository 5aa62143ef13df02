"""Repository-wide pytest set-up.

SpeechBrain registers lazy and deprecated-module redirects in ``sys.modules``
for optional integrations (k2, ...). Hypothesis scans ``sys.modules`` while
collecting, touching them, and the failed optional import aborts the session.
Drop the redirects whose target cannot be imported here.
"""

import sys

import speechbrain  # noqa: F401  (registers the redirects)


def _drop_unimportable_redirects() -> None:
    for name, module in list(sys.modules.items()):
        if type(module).__name__ not in ("LazyModule", "DeprecatedModuleRedirect"):
            continue
        try:
            getattr(module, "__file__", None)
        except ImportError:
            del sys.modules[name]


_drop_unimportable_redirects()


def pytest_addoption(parser):
    parser.addoption("--device", default="cpu",
                     help="torch device for the tests marked 'device' (cpu, cuda, cuda:1); "
                          "benchmarks/gpu_check.sh runs them with --device=cuda")


def pytest_configure(config):
    config.addinivalue_line("markers", "device: runs its tensors on --device (default cpu); "
                                       "select with -m device")
