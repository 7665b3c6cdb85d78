"""The restore dialog shows what the restore will change (issue 31 §2), worked out by its own worker against
the real database while the question is already asked; at 80×24 the question and the answers stay in view."""

from __future__ import annotations

from textual.widgets import Button, Footer, Static

from app.screens.restore import RestoreModal
from app.tui import make_app
from services.server import dump
from services.snapshots.store import SnapshotStore
from services.workspace import Workspace
from tests.helpers import full_dump, listed, open_restore, seed_items, until


async def test_restore_dialog_shows_what_the_restore_changes(pg18, db18, snapdir):
    seed_items(pg18, db18, 50)
    store = SnapshotStore(snapdir)
    await dump.snapshot(db18, store, "baseline")
    pg18.psql("CREATE TABLE later (id int); DELETE FROM items WHERE id > 40;", db18.dbname)
    before = full_dump(db18)
    app = make_app(Workspace(conn=db18, store=store))
    async with app.run_test(size=(80, 24)) as pilot:
        await listed(pilot, 1)
        modal = await open_restore(pilot)
        body = modal.query_one("#cost-body", Static)
        # The question is there and "No" has the focus from the start, preview or not.
        assert isinstance(app.focused, Button) and app.focused.id == "answer-no"
        await until(pilot, lambda: "gone" in str(body.render()), what="the restore's preview")
        text = str(body.render())
        assert text.startswith("1 gone · 0 back · 0 redefined · rows differ in 2 of 2 tables")
        assert "table public.later" in text and "public.items: 40 → 50 (+10)" in text
        # Everything needed to answer is on screen at 80×24: the dialog needs no scrolling.
        await pilot.pause()
        dialog = modal.query_one("#dialog")
        assert dialog.max_scroll_y == 0, dialog.max_scroll_y
        for widget in (modal.query_one(".question"), modal.query_one("#answer-yes"), modal.query_one("#cost")):
            assert dialog.region.contains_region(widget.region), widget
        # Its own footer, and q closes it like every dialog (issue 30, item 4).
        shown = {key for key, ab in app.screen.active_bindings.items() if ab.binding.show and ab.node is not app}
        assert modal.query_one(Footer).display and "escape" in shown and "n" not in shown, shown
        await pilot.press("q")
        await until(pilot, lambda: not isinstance(app.screen, RestoreModal), what="the dialog to close")
    assert full_dump(db18) == before
