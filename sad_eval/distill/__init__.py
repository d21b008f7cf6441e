"""Distillation: teacher trajectories -> training sequences -> a student checkpoint.

The package is also the Python API's `sad_eval.distill(data, student, out, method="sad", **options)`
(see `sad_eval.distill.api.distill`): ``sad_eval.distill`` names this package as soon as any of its modules
is imported, so the package itself is made callable rather than shadowed by it.
"""

import sys
import types


class _CallablePackage(types.ModuleType):
    def __call__(self, *args, **kwargs):
        from sad_eval.distill.api import distill

        return distill(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
