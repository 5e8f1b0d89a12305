"""Compiled forms: a fitted model as data, answered without scikit-learn, verified against it.

- :mod:`~modelserve.core.compiled.form`: what a form holds, and reading ``compiled.bin`` safely
- :mod:`~modelserve.core.compiled.kernel`: the machine code that walks the trees
- :mod:`~modelserve.core.compiled.evaluate`: answers (predictions, probabilities) from a form
- :mod:`~modelserve.core.compiled.verify`: the rows a form is checked on, and the check

Forms are derived at publish by :mod:`modelserve.training.compile`.
"""

from modelserve.core.compiled.form import CompiledForm, CompiledFormError, loads

__all__ = ["CompiledForm", "CompiledFormError", "loads"]
