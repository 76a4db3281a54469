"""Whether a screen is still there, for workers that resume after a call to the daemon."""

from __future__ import annotations

from textual.dom import DOMNode


def is_closing(node: DOMNode) -> bool:
    """Tell whether `node` is being removed or was removed, e.g. a screen popped while a worker waited.

    Textual cancels a screen's workers only once the screen itself unmounts, after its
    children are gone, so a worker that resumes in between finds no widgets to update.
    """
    # NOTE: Textual 8.2.8 has no public flag for a node being removed. `_pruning` is set on
    # every node of a subtree that remove() takes down, before its children go.
    return not node.is_attached or bool(getattr(node, "_pruning", False))
