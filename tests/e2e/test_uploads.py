"""Uploads in the browser: the "Upload file" button and a file dropped on the transcript each add a note to
the transcript (which the model reads at its next turn) and a downloadable entry to the Files panel."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from .support import open_session

REPORT = b"a,b\n" * 3072  # 12 KiB


def test_upload_by_button_and_by_drop_then_list_download_and_the_model_reads_the_note(server, page, api, session_id):
    open_session(page, server.base_url, session_id)
    transcript, files = page.locator("#transcript"), page.locator("#files")
    expect(files.get_by_text("No files yet")).to_be_visible()

    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Upload file").click()
    chooser.value.set_files(files=[{"name": "report.csv", "mimeType": "text/csv", "buffer": REPORT}])
    expect(transcript.locator(".msg-note")).to_have_count(1)
    expect(transcript.locator(".msg-note")).to_contain_text("uploaded report.csv, 12 KB")
    expect(page.locator("#upload-status")).to_have_text("Uploaded report.csv")
    expect(files.get_by_role("link", name="report.csv")).to_be_visible()
    expect(files).to_contain_text("uploaded by alice")

    dropped = page.evaluate_handle("""() => {
        const transfer = new DataTransfer();
        transfer.items.add(new File(["dropped text"], "dropped.txt", {type: "text/plain"}));
        return transfer;
    }""")
    transcript.dispatch_event("dragover", {"dataTransfer": dropped})
    expect(transcript).to_have_class(re.compile(r"\bdrop-target\b"))
    transcript.dispatch_event("drop", {"dataTransfer": dropped})
    expect(transcript.locator(".msg-note")).to_have_count(2)
    expect(transcript.locator(".msg-note").nth(1)).to_contain_text("uploaded dropped.txt, 12 bytes")
    expect(transcript).not_to_have_class(re.compile(r"\bdrop-target\b"))
    expect(files.get_by_role("link", name="dropped.txt")).to_be_visible()

    with page.expect_download() as download:
        files.get_by_role("link", name="report.csv").click()
    assert download.value.suggested_filename == "report.csv"
    with open(download.value.path(), "rb") as downloaded:
        assert downloaded.read() == REPORT

    api.run_start(session_id, 'script:{"turns":[{"echo":true}]}')  # the model answers with what it was sent
    answer = transcript.locator(".msg-assistant").last
    expect(answer).to_contain_text("[user] [uploaded report.csv, 12 KB] [user] [uploaded dropped.txt, 12 bytes]")


def test_an_upload_the_server_refuses_is_explained_inline(server, page, api, session_id):
    open_session(page, server.base_url, session_id)
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Upload file").click()
    chooser.value.set_files(files=[{"name": "..", "mimeType": "text/plain", "buffer": b"x"}])
    expect(page.locator("#upload-status")).to_have_text(re.compile(r"^Could not upload \.\.: "))
    expect(page.locator("#upload-status")).to_have_attribute("data-state", "error")
    expect(page.locator("#transcript .msg-note")).to_have_count(0)


def test_a_viewer_sees_and_downloads_the_files_but_has_no_upload(server, page):
    from .support import Api

    owner = Api(server.base_url, server.create_token("uma"))
    session_id = owner.new_session("uma's files")
    assert owner.call("PUT", f"/api/sessions/{session_id}/members/users/alice", {"role": "viewer"})[0] == 200
    open_session(page, server.base_url, session_id)
    expect(page.locator("#composer")).to_have_attribute("data-watching", "")
    expect(page.get_by_role("button", name="Upload file")).to_be_hidden()
    expect(page.locator("#files").get_by_text("No files yet")).to_be_visible()
    status, answer = owner.call("POST", f"/api/sessions/{session_id}/files?name=plan.md", {"plan": "json is fine"})
    assert status == 201, answer
    # The owner's upload reaches the viewer's tab live: its note, then the refreshed Files panel.
    expect(page.locator("#transcript .msg-note")).to_contain_text("uploaded plan.md")
    link = page.locator("#files").get_by_role("link", name="plan.md")
    expect(link).to_be_visible()
    with page.expect_download() as download:
        link.click()
    with open(download.value.path(), "rb") as downloaded:
        assert downloaded.read() == b'{"plan": "json is fine"}'
