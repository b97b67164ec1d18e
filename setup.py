"""Build step of the package (the metadata is in pyproject.toml).

The SQL lives once, in the top-level ``sql/`` (schema, migrations, named queries). A wheel ships it inside the
package as ``catalogue_tagger/sql/``: ``build_py`` copies it there at build time, so no link is needed in the
tree and none can dangle in a container image. A checkout (and an editable install) reads ``sql/`` in place;
see ``catalogue_tagger.store.queries.sql_dir``.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SQL_SOURCE = Path("sql")  # setuptools runs this file from the project root
SQL_TARGET = Path("catalogue_tagger") / "sql"


class BuildPyWithSql(build_py):
    """``build_py`` that also copies ``sql/**/*.sql`` to ``<build_lib>/catalogue_tagger/sql/``."""

    def _sql_files(self) -> list[Path]:
        files = sorted(SQL_SOURCE.rglob("*.sql"))
        if not files:
            raise FileNotFoundError(f"no SQL under {SQL_SOURCE.resolve()}: the package would not work")
        return files

    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install reads sql/ in place
            return
        for source in self._sql_files():
            target = Path(self.build_lib) / SQL_TARGET / source.relative_to(SQL_SOURCE)
            self.mkpath(str(target.parent))
            self.copy_file(str(source), str(target))

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs: list[str] = super().get_outputs(include_bytecode)
        if self.editable_mode:
            return outputs
        built = Path(self.build_lib) / SQL_TARGET
        return [*outputs, *(str(built / source.relative_to(SQL_SOURCE)) for source in self._sql_files())]


setup(cmdclass={"build_py": BuildPyWithSql})
