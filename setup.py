"""Compile the gettext catalogs into the build, so installed packages ship `.mo` files.

The project's metadata lives in pyproject.toml; this file only adds the catalog step to
`build_py`. The `.mo` files are written into the build folder, never into the source tree,
so a checkout keeps reading its `.po` files (edm_tui/i18n.py compiles them in memory).
"""

from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from setuptools import setup
from setuptools.command.build_py import build_py

LOCALE = Path("edm_tui") / "locale"


class BuildPyWithCatalogs(build_py):
    """Run `build_py`, then compile each `LC_MESSAGES/*.po` next to its copy in the build."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        for source in sorted(LOCALE.glob("*/LC_MESSAGES/*.po")):
            language = source.parent.parent.name
            target = Path(self.build_lib) / source.with_suffix(".mo")
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(source, "rb") as handle:
                catalog = read_po(handle, locale=language)
            with open(target, "wb") as handle:
                write_mo(handle, catalog)


setup(cmdclass={"build_py": BuildPyWithCatalogs})
