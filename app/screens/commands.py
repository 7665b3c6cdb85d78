"""The command palette entries of the main screen: the story's ``*snapshot``-style commands (from the
workflow file) and every key binding that has an id (from the screen's BINDINGS), so the palette, the
footer and the help all describe the same actions."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from app.screens.help import key_name


class DbsageCommands(Provider):
    """Offers the main screen's actions; each runs exactly what its key runs."""

    def _entries(self) -> list[tuple[str, str, str]]:
        screen = self.screen
        workflow = getattr(screen, "workflow", None)
        if workflow is None:
            return []
        entries = [(op.palette, f"{op.label}: {op.help}" if op.help else op.label, op.action)
                   for op in workflow.operations if op.palette]
        entries += [(f"{b.description} ({key_name(b)})", b.tooltip, b.action)
                    for b in screen.keys() if b.action != "cancel"]
        return entries

    async def discover(self) -> Hits:
        for name, help_text, action in self._entries():
            yield DiscoveryHit(name, partial(self.screen.run_action, action), help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, action in self._entries():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), partial(self.screen.run_action, action),
                          help=help_text)
