"""Build of the optional compiled kernel; everything else is in setup.cfg.

``optional=True``: where no C compiler is present the install goes on without it and
``mlwatcher_exporter.kernel`` uses its numpy implementation.
"""

import numpy
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "mlwatcher_exporter._kernel",
            sources=["mlwatcher_exporter/_kernel.c"],
            include_dirs=[numpy.get_include()],
            extra_compile_args=["-O3", "-fno-trapping-math"],  # the latter: branch-free loops vectorise
            optional=True,
        )
    ]
)
