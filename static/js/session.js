// The session page's small script: what htmx cannot do by itself.
// - Enter sends, Shift+Enter inserts a newline; while a run is in flight neither Enter nor a form
//   submission sends anything (the server would answer 409 anyway).
// - Esc stops the run.
// - The stop button paints "stopping…" in the click's own frame, before any network round trip, and
//   returns to "stop" with a visible error if the stop request fails.
// - The draft survives the composer being swapped (every tab's composer is re-rendered on each run state).
// - A send takes its text out of the box at once and puts it back only if the send fails: on a slow link
//   the send's response and the socket's updates arrive in any order, and a sent message never comes back.
// - Composers only move forward (data-rank: the run, then running → stopping → idle): a response rendered
//   before an update that arrived first is not swapped over it.
// - A "reconnecting…" mark while the page's WebSocket is down; reconnects on close codes the ws extension
//   ignores (the server sends a fresh snapshot on every connect, so the page converges).
// - Long sessions: the page opens at the newest message and follows the answer while the reader is at the
//   bottom; a reader who scrolled up keeps their place (older pages prepended included) and gets a
//   "Jump to latest" button; a new approval card is brought into view.
// - The run's elapsed time ticks.
// - A command answered 401 (the login expired) says so in the composer, with a link to log in again.
// - "Edit" on the last user message puts its text in the composer, which then sends it as a replacement
//   (replace_from_message) until sent or cancelled (Cancel, Esc).
(function () {
  "use strict";

  const RECONNECTING_CODES = new Set([1006, 1011, 1012, 1013]); // htmx-ext-ws 2.0.4 retries these itself
  let draft = null;
  let focused = null; // "text" | "button" | null: where keyboard focus was before the composer was swapped
  let selection = null;
  // A stop this tab has sent and the server has not answered yet. The composer can be re-rendered
  // meanwhile (other run events); the new composer must still say "stopping…", not offer stop again.
  let pendingStopRun = null;
  // The text of a send in flight: out of the box, back in it only if the send fails.
  let pendingSend = null;
  // The message "Edit" is replacing ({id, before: the draft it displaced}); taken by a send like its text.
  let editing = null;
  let pendingEdit = null;

  const composer = () => document.getElementById("composer");
  const textarea = () => document.getElementById("composer-text");
  const button = () => composer() && composer().querySelector(".composer-send");
  const mode = () => (composer() ? composer().dataset.mode : "idle");

  function refreshSendButton() {
    const btn = button();
    if (btn && btn.dataset.mode === "send") {
      btn.disabled = !textarea() || textarea().value.trim() === "";
    }
  }

  // --- keeping the draft across swaps -------------------------------------------------------------------
  function stash(target) {
    if (!target || target.id !== "composer" || !textarea()) return;
    draft = textarea().value;
    focused = document.activeElement === textarea() ? "text" : document.activeElement === button() ? "button" : null;
    selection = [textarea().selectionStart, textarea().selectionEnd];
  }

  // Touch screens have no Esc key: their placeholder says what they can do.
  const TOUCH = window.matchMedia("(hover: none) and (pointer: coarse)").matches;

  function touchPlaceholder() {
    const box = textarea();
    if (TOUCH && box && box.placeholder.includes("Esc")) {
      box.placeholder = "A run is in flight — tap stop to stop it";
    }
  }

  function restore(target) {
    touchPlaceholder();
    const box = textarea();
    if (!box || !composer() || (target && target.id !== "composer" && !target.contains(composer()))) return;
    if (draft !== null) {
      box.value = draft;
    }
    if (mode() !== "idle") editing = null; // a run started (here or in another tab): the edit is over
    paintEditing();
    const serverMode = composer().dataset.serverMode;
    if (serverMode !== "running" || composer().dataset.runId !== pendingStopRun) {
      pendingStopRun = null; // the server now says stopping (or the run is over): nothing is pending
    } else if (button()) {
      paintStopping(button());
    }
    if (focused === "text") {
      box.focus();
      if (selection) box.setSelectionRange(selection[0], selection[1]);
    } else if (focused === "button" && button()) {
      button().focus(); // a keyboard user who pressed stop keeps their place (a disabled button cannot)
      if (document.activeElement !== button()) box.focus();
    }
    refreshSendButton();
  }

  // --- composers only move forward -------------------------------------------------------------------------
  function rankOf(element) {
    const [run, phase] = ((element && element.dataset.rank) || "0.0").split(".").map(Number);
    return [run, phase];
  }

  function isOlder(incoming) {
    const [run, phase] = rankOf(incoming);
    const [currentRun, currentPhase] = rankOf(composer());
    return run < currentRun || (run === currentRun && phase < currentPhase);
  }

  function incomingComposer(html) {
    const template = document.createElement("template");
    template.innerHTML = html;
    return template.content.querySelector("#composer");
  }

  document.addEventListener("htmx:beforeSwap", (e) => {
    if (isStopRequest(e)) pendingStopRun = null; // the server has answered the stop: its composer is the truth
    if (e.detail.target && e.detail.target.id === "composer" && composer()) {
      const incoming = incomingComposer(e.detail.serverResponse || "");
      if (incoming && isOlder(incoming)) {
        e.detail.shouldSwap = false; // the socket already brought a newer one
        return;
      }
    }
    stash(e.detail.target);
  });
  // The steering box is re-rendered with the run's state too: what is typed in it survives that.
  let steerDraft = null;
  document.addEventListener("htmx:oobBeforeSwap", (e) => {
    if (e.detail.target.id === "steering") {
      const box = document.getElementById("steer-text");
      steerDraft = box ? { value: box.value, focused: document.activeElement === box } : null;
    }
  });
  document.addEventListener("htmx:oobAfterSwap", (e) => {
    const box = document.getElementById("steer-text");
    if (e.detail.target.id !== "steering" || !steerDraft || !box) return;
    if (!box.value) box.value = steerDraft.value;
    if (steerDraft.focused) box.focus();
    steerDraft = null;
  });

  document.addEventListener("htmx:oobBeforeSwap", (e) => {
    const incoming = e.detail.fragment && e.detail.fragment.querySelector("#composer");
    if (incoming && e.detail.target.id === "composer" && isOlder(incoming)) {
      e.detail.shouldSwap = false;
      return;
    }
    stash(e.detail.target);
  });
  document.addEventListener("htmx:afterSwap", (e) => restore(e.detail.target));
  document.addEventListener("htmx:oobAfterSwap", (e) => restore(e.detail.target));

  // --- typing and sending -------------------------------------------------------------------------------
  document.addEventListener("input", (e) => {
    if (e.target === textarea()) refreshSendButton();
  });

  // Esc stops the run from the composer or the page, not while typing elsewhere (a steering message).
  function typingElsewhere(target) {
    return target !== textarea() && target instanceof HTMLElement && target.matches("input, textarea, select");
  }

  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && e.target instanceof HTMLElement && e.target.id === "steer-text") {
      e.target.blur(); // Esc leaves the steering box (its draft kept); it never stops the run
      return;
    }
    if (e.key === "Escape" && editing && e.target === textarea()) {
      e.preventDefault();
      cancelEditing();
      return;
    }
    if (e.key === "Escape" && mode() === "running" && !typingElsewhere(e.target)) {
      const btn = button();
      if (btn && btn.dataset.mode === "stop") {
        e.preventDefault();
        btn.click();
      }
      return;
    }
    if (e.target !== textarea() || e.key !== "Enter" || e.shiftKey || e.isComposing) return;
    e.preventDefault(); // Enter never inserts a newline here; Shift+Enter does
    if (mode() === "idle" && textarea().value.trim() !== "") {
      composer().requestSubmit();
    }
  });

  // Gate the submission itself, not just the key: nothing is sent unless the composer is idle and no other
  // send is in flight.
  document.addEventListener("submit", (e) => {
    if (e.target === composer() && (mode() !== "idle" || pendingSend !== null)) {
      e.preventDefault();
      e.stopImmediatePropagation();
    }
  }, true);

  document.addEventListener("htmx:beforeRequest", (e) => {
    const elt = e.detail.elt;
    if (elt === composer() && (mode() !== "idle" || pendingSend !== null)) {
      e.preventDefault();
      return;
    }
    if (elt === composer() && textarea().value.trim() === "") {
      e.preventDefault();
      return;
    }
    if (elt === composer()) {
      startSend(e.detail.xhr);
      return;
    }
    if (elt.classList && elt.classList.contains("composer-send") && elt.dataset.mode === "stop") {
      pendingStopRun = composer().dataset.runId;
      paintStopping(elt);
    }
  });

  // --- send: the text leaves the box once, and comes back only if the send failed ---------------------------
  function startSend(xhr) {
    // htmx has already read the form's values: the request carries the text.
    pendingSend = textarea().value;
    textarea().value = "";
    draft = "";
    pendingEdit = editing;
    editing = null;
    paintEditing();
    setError("");
    refreshSendButton();
    // Settled on the request itself: htmx's own events go to the form that sent it, which the socket may
    // already have replaced (a detached form's events never reach the document).
    xhr.addEventListener("loadend", () => settleSend(xhr));
  }

  function settleSend(xhr) {
    const text = pendingSend;
    pendingSend = null;
    const edited = pendingEdit;
    pendingEdit = null;
    const answer = xhr.status >= 200 && xhr.status < 300 ? incomingComposer(xhr.responseText || "") : null;
    if (answer && answer.hasAttribute("data-clear-draft")) {
      refreshSendButton();
      return; // accepted: the text is in the transcript now
    }
    if (edited && mode() === "idle") {
      editing = edited; // still an edit of that message, once the reason is read
      paintEditing();
    }
    // Not sent: the text goes back (ahead of anything typed meanwhile), with the reason.
    const box = textarea();
    if (box && text !== null) {
      box.value = box.value.trim() === "" ? text : `${text}\n${box.value}`;
      draft = box.value;
    }
    if (xhr.status === 401) {
      showLoginExpired("Not sent: ");
    } else if (answer) {
      const reason = answer.querySelector(".composer-error");
      setError(reason && reason.textContent.trim() ? reason.textContent.trim() : "Not sent — try again.");
    } else {
      setError(xhr.status === 0 ? "Not sent (network error) — try again." : `Not sent (HTTP ${xhr.status}) — try again.`);
    }
    refreshSendButton();
  }

  // --- Edit: the last user message back in the composer ---------------------------------------------------
  function paintEditing() {
    const input = document.getElementById("composer-replace");
    const bar = composer() && composer().querySelector(".composer-editing");
    if (input) input.value = editing ? editing.id : "";
    if (bar) bar.hidden = !editing;
  }

  function startEditing(btn) {
    const box = textarea();
    if (!box || mode() !== "idle" || pendingSend !== null) return;
    editing = { id: btn.dataset.messageId, before: editing ? editing.before : box.value };
    box.value = btn.dataset.text;
    draft = box.value;
    paintEditing();
    box.focus();
    box.setSelectionRange(box.value.length, box.value.length);
    refreshSendButton();
  }

  function cancelEditing() {
    const box = textarea();
    if (box && editing) {
      box.value = editing.before;
      draft = box.value;
      box.focus();
    }
    editing = null;
    paintEditing();
    refreshSendButton();
  }

  document.addEventListener("click", (e) => {
    const target = e.target instanceof Element ? e.target : null;
    if (target && target.closest(".msg-edit")) startEditing(target.closest(".msg-edit"));
    if (target && target.closest(".composer-cancel-edit")) cancelEditing();
  });

  // --- stop: instant paint, honest failure -----------------------------------------------------------------
  function setError(text) {
    const slot = composer() && composer().querySelector(".composer-error");
    if (slot) slot.textContent = text;
  }

  function paintStopping(btn) {
    // A disabled button drops the keyboard focus (to <body>): keep it in the composer, on the text.
    if (document.activeElement === btn && textarea()) {
      textarea().focus();
      focused = "text";
    }
    composer().dataset.mode = "stopping";
    btn.dataset.mode = "stopping";
    btn.textContent = "stopping…";
    btn.setAttribute("aria-busy", "true");
    btn.disabled = true;
    const hint = document.getElementById("composer-hint");
    if (hint) hint.textContent = "Stopping — waiting for the run to end";
    setError("");
  }

  function stopFailed(message) {
    // Whatever composer is on the page now (it may have been re-rendered since the click).
    pendingStopRun = null;
    const btn = button();
    if (!btn || btn.dataset.mode !== "stopping" || composer().dataset.serverMode !== "running") return;
    composer().dataset.mode = "running";
    btn.dataset.mode = "stop";
    btn.textContent = "stop";
    btn.removeAttribute("aria-busy");
    btn.disabled = false;
    const hint = document.getElementById("composer-hint");
    if (hint) hint.textContent = "Esc stops the run";
    setError(message);
  }

  function isSendRequest(e) {
    const elt = e.detail.requestConfig ? e.detail.requestConfig.elt : e.detail.elt;
    return Boolean(elt && elt.id === "composer");
  }

  function isStopRequest(e) {
    const elt = e.detail.requestConfig ? e.detail.requestConfig.elt : e.detail.elt;
    return Boolean(elt && elt.classList && elt.classList.contains("composer-send") && elt.type === "button");
  }

  // 401: the login expired (harness/portal/auth.py). Nothing was swapped; say so where the user acted, with a
  // way back that keeps this page's address.
  function showLoginExpired(prefix) {
    const slot = composer() && composer().querySelector(".composer-error");
    if (!slot) return;
    const link = document.createElement("a");
    const login = document.body.dataset.loginUrl || "/login/";
    link.href = `${login}?next=${encodeURIComponent(window.location.pathname)}`;
    link.textContent = "log in again";
    slot.replaceChildren(`${prefix}your login has expired — `, link, ".");
  }

  document.addEventListener("htmx:responseError", (e) => {
    const expired = e.detail.xhr.status === 401;
    if (isStopRequest(e)) {
      stopFailed(expired ? "" : `Stop failed (HTTP ${e.detail.xhr.status}) — try again.`);
      if (expired) showLoginExpired("Stop failed: ");
    } else if (expired && !isSendRequest(e)) {
      showLoginExpired("Not done: "); // (a send says so itself: settleSend)
    }
  });
  document.addEventListener("htmx:sendError", (e) => {
    if (isStopRequest(e)) stopFailed("Stop failed (network error) — try again.");
  });

  // --- the connection mark and reconnecting ------------------------------------------------------------------
  function connectionMark(down) {
    const mark = document.getElementById("connection");
    if (mark) mark.hidden = !down;
  }

  let attempts = 0;
  let reconnectTimer = null;

  document.addEventListener("htmx:wsOpen", () => {
    attempts = 0;
    connectionMark(false);
  });
  document.addEventListener("htmx:wsClose", (e) => {
    const code = e.detail.event.code;
    if (code === 4401) {
      window.location.reload(); // the login expired: the page will ask to log in again
      return;
    }
    if (code === 4404) return; // the session is gone
    if (code === 4403) {
      // Access was taken away (unshared, deleted, account deactivated): say so and stay closed.
      const live = document.getElementById("session-live");
      const notice = document.createElement("p");
      notice.id = "access-revoked";
      notice.className = "access-revoked";
      notice.setAttribute("role", "alert");
      notice.textContent = "You no longer have access to this session";
      if (live) live.replaceWith(notice);
      else document.body.prepend(notice);
      return;
    }
    connectionMark(true);
    if (!RECONNECTING_CODES.has(code)) reconnectLater(e.detail.socketWrapper);
  });

  function reconnectLater(socketWrapper) {
    // The extension gives up on clean closes (1000/1001, e.g. when the server restarts). Reconnect the same
    // socket wrapper with our own jittered backoff; the server answers every connect with a fresh snapshot.
    if (reconnectTimer) return;
    attempts += 1;
    const delay = Math.min(30000, 500 * 2 ** Math.min(attempts, 6)) * (0.5 + Math.random() / 2);
    reconnectTimer = setTimeout(() => {
      reconnectTimer = null;
      if (document.getElementById("session-live")) socketWrapper.reconnect();
    }, delay);
  }

  // --- long sessions: open at the newest, follow the answer, keep the reader's place ------------------------
  // The window scrolls; the dock (run status, steering, composer) sticks to the bottom of the screen. A
  // reader at the bottom is "pinned": whatever changes, the view stays at the newest. A reader who scrolls up
  // is not: changes keep the first message they can see where it is (an older page prepended above it
  // included), and "Jump to latest" takes them back down. A new approval card brings the view down to it.
  const NEAR_BOTTOM = 8; // px
  const scroller = document.scrollingElement || document.documentElement;
  const fromBottom = () => scroller.scrollHeight - window.innerHeight - window.scrollY;
  let pinned = true;
  let lastY = 0;
  let place = null; // where the reader was before a swap: {id, top} of their first visible message

  function toBottom() {
    window.scrollTo({ top: scroller.scrollHeight, behavior: "auto" });
    lastY = window.scrollY;
  }

  function showJump() {
    const jump = document.getElementById("jump-latest");
    if (jump) jump.hidden = pinned;
  }

  function firstVisibleMessage() {
    for (const item of document.querySelectorAll("#transcript > li.msg")) {
      const box = item.getBoundingClientRect();
      if (box.bottom > 0) return { id: item.id, top: box.top };
    }
    return null;
  }

  function notePlace() {
    place = pinned ? null : firstVisibleMessage();
  }

  function keepPlace() {
    if (pinned) {
      toBottom();
    } else if (place) {
      const item = document.getElementById(place.id);
      const moved = item ? item.getBoundingClientRect().top - place.top : 0;
      if (moved) window.scrollBy({ top: moved, behavior: "auto" });
      lastY = window.scrollY;
    }
    place = null;
    showJump();
  }

  function jumpToLatest() {
    pinned = true;
    toBottom();
    showJump();
  }

  // Approval cards pending now that the reader has not been shown yet.
  const pendingCards = () => new Set(
    Array.from(document.querySelectorAll('#approvals .approval[data-status="pending"]'), (card) => card.id),
  );
  let shownCards = pendingCards();

  function showNewApprovals() {
    const now = pendingCards();
    const fresh = Array.from(now).some((id) => !shownCards.has(id));
    shownCards = now;
    if (fresh) jumpToLatest(); // the cards sit right above the dock: at the bottom, they are in view
  }

  window.addEventListener("scroll", () => {
    const y = window.scrollY;
    if (fromBottom() <= NEAR_BOTTOM) pinned = true;
    else if (y < lastY) pinned = false; // (content growing below never moves scrollY; only a reader does)
    lastY = y;
    showJump();
  }, { passive: true });
  // A reader's intent to go up unpins at once, before the scroll it causes lands (an answer may grow first).
  window.addEventListener("wheel", (e) => {
    if (e.deltaY < 0 && window.scrollY > 0) pinned = false;
  }, { passive: true });
  let touchY = null;
  window.addEventListener("touchstart", (e) => { touchY = e.touches[0].clientY; }, { passive: true });
  window.addEventListener("touchmove", (e) => {
    if (touchY !== null && e.touches[0].clientY > touchY && window.scrollY > 0) pinned = false;
  }, { passive: true });
  document.addEventListener("keydown", (e) => {
    const up = e.key === "PageUp" || e.key === "ArrowUp" || e.key === "Home" || (e.key === " " && e.shiftKey);
    if (up && !(e.target instanceof HTMLElement && e.target.matches("input, textarea, select"))) pinned = false;
  });

  // A reconnect's snapshot brings the newest page only: the older pages this tab loaded stay above it (the
  // reader may be reading them), under the sentinel that loads the page before them — if the new page
  // continues what the tab holds.
  const messageNumber = (item) => Number(item.id.slice("msg-".length));
  document.addEventListener("htmx:oobBeforeSwap", (e) => {
    const incoming = e.detail.target.id === "transcript" && e.detail.fragment
      && e.detail.fragment.querySelector("#transcript");
    const first = incoming && incoming.querySelector(":scope > li.msg");
    // Only when the pages join up: a tab away for more than a page of messages takes the new page whole
    // (with its own "load older" sentinel), or the messages in between would be silently missing.
    if (!first || !e.detail.target.querySelector(`:scope > li#${CSS.escape(first.id)}`)) return;
    const older = Array.from(e.detail.target.querySelectorAll(":scope > li.msg"))
      .filter((item) => messageNumber(item) < messageNumber(first));
    if (older.length === 0) return;
    const sentinel = e.detail.target.querySelector(":scope > li.older");
    incoming.querySelectorAll(":scope > li.older").forEach((item) => item.remove());
    first.before(...(sentinel ? [sentinel] : []), ...older);
  });

  // Every change arrives as a swap: a socket message (several fragments at once) or an HTTP answer.
  document.addEventListener("htmx:wsBeforeMessage", notePlace);
  document.addEventListener("htmx:wsAfterMessage", () => {
    keepPlace();
    showNewApprovals();
  });
  document.addEventListener("htmx:beforeSwap", notePlace);
  document.addEventListener("htmx:afterSwap", (e) => {
    if (e.detail.target && e.detail.target.id === "receipt") {
      jumpToLatest(); // the receipt opens below the last message, right above the dock
      return;
    }
    if (place || pinned) keepPlace(); // (once per answer: htmx sends afterSwap for each element it swapped in)
  });
  // Anything else that changes the page's height (the composer's box resized, a phone's keyboard) keeps a
  // pinned reader at the bottom too.
  window.addEventListener("resize", () => { if (pinned) toBottom(); });
  if (window.ResizeObserver && document.getElementById("session-live")) {
    new ResizeObserver(() => { if (pinned) toBottom(); }).observe(document.getElementById("session-live"));
  }
  document.addEventListener("click", (e) => {
    const jump = e.target instanceof Element && e.target.closest("#jump-latest");
    if (!jump) return;
    jumpToLatest();
    if (e.detail === 0 && textarea()) textarea().focus({ preventScroll: true }); // a keyboard user: on to typing
  });

  // A session opens at its newest message. This runs before htmx looks at the page, so the "load older"
  // sentinel at the top is not in view (htmx `revealed`) unless the newest page is shorter than the screen.
  if ("scrollRestoration" in history) history.scrollRestoration = "manual";
  toBottom();

  // --- elapsed time -----------------------------------------------------------------------------------------
  function tick() {
    const status = document.getElementById("run-status");
    const slot = status && status.querySelector(".elapsed");
    if (slot && status.dataset.started) {
      const end = status.dataset.finished ? Date.parse(status.dataset.finished) : Date.now();
      const seconds = Math.max(0, Math.round((end - Date.parse(status.dataset.started)) / 1000));
      slot.textContent = seconds < 60 ? `${seconds}s` : `${Math.floor(seconds / 60)}m ${seconds % 60}s`;
    }
  }
  setInterval(tick, 1000);
  document.addEventListener("htmx:oobAfterSwap", tick);
  document.addEventListener("DOMContentLoaded", () => {
    tick();
    refreshSendButton();
    if (textarea() && mode() === "idle") textarea().focus(); // a session opens ready to type
    touchPlaceholder();
  });
})();

// The tab's title says when the session waits for a decision ("(1) Needs approval · …"), so a person working
// in another tab sees it.
(function () {
  "use strict";

  function titleForApprovals() {
    const heading = document.getElementById("session-title");
    if (!heading) return;
    const base = `${heading.textContent.trim()} · Agent harness`;
    const pending = document.querySelectorAll('#approvals .approval[data-status="pending"]').length;
    const wanted = pending ? `(${pending}) Needs approval · ${base}` : base;
    if (document.title !== wanted) document.title = wanted;
  }
  document.addEventListener("htmx:oobAfterSwap", titleForApprovals);
  document.addEventListener("htmx:afterSwap", titleForApprovals);
  document.addEventListener("DOMContentLoaded", titleForApprovals);
})();
