"""The package's import graph has no cycles (at run time).

import-linter (``make lint``) checks that the layers point one way; this
checks what a layers contract cannot see: two modules of one layer (or of one
package) importing each other, directly or through others. Imports under
``if TYPE_CHECKING:`` are left out: they never run.
"""

from __future__ import annotations

import grimp


def test_no_import_cycles() -> None:
    graph = grimp.build_graph("sockworks", exclude_type_checking_imports=True)
    cycles = []
    for module in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back is not None:
                cycles.append((module, *back))
    assert cycles == [], "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)
