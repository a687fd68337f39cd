"""The session's model, chosen in the page: every open tab follows, and the next run uses it."""

from __future__ import annotations

from playwright.sync_api import expect

from .support import open_session


def test_a_model_chosen_in_one_tab_reaches_the_other_and_the_next_run(context, server, api, session_id):
    tab_a, tab_b = context.new_page(), context.new_page()
    open_session(tab_a, server.base_url, session_id)
    open_session(tab_b, server.base_url, session_id)
    for tab in (tab_a, tab_b):
        expect(tab.get_by_label("Model")).to_have_value("scripted")  # the deployment's default

    tab_a.get_by_label("Model").select_option(label="Scripted model (second)")
    expect(tab_b.get_by_label("Model")).to_have_value("scripted:second")  # pushed over tab B's socket
    assert api.session(session_id)["model"] == "scripted:second"

    run_id = api.run_start(session_id, "hello")
    assert api.run(run_id)["model"] == "scripted:second"
