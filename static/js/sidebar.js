// The session sidebar (templates/portal/sidebar/nav.html): its phone toggle, and keeping it current across the
// page's socket reconnecting (events are lossy: a reopened socket refetches the lists for the current search).
(() => {
  "use strict";

  document.addEventListener("click", (e) => {
    const toggle = e.target instanceof Element && e.target.closest("#sidebar-toggle");
    if (!toggle) return;
    toggle.setAttribute("aria-expanded", toggle.getAttribute("aria-expanded") === "true" ? "false" : "true");
  });

  let opened = false;
  document.addEventListener("htmx:wsOpen", () => {
    const search = document.getElementById("sidebar-search");
    if (opened && search) htmx.trigger(search, "sidebar:refresh"); // it may have missed changes while closed
    opened = true;
  });

  // News of a session this page does not list — new, newly shared with us, or on a page not loaded yet (a run
  // starting makes it the newest): ask for its item, which comes first in its list if it belongs to this view.
  const asked = new Set();
  document.addEventListener("htmx:oobErrorNoTarget", (e) => {
    const id = e.detail.content && e.detail.content.id;
    const nav = document.getElementById("sidebar");
    const search = document.getElementById("sidebar-search");
    if (!id || !id.startsWith("sb-badge-") || !nav || !search) return;
    const sessionId = id.slice("sb-badge-".length);
    if (asked.has(sessionId)) return;
    asked.add(sessionId);
    htmx.ajax("GET", nav.dataset.itemUrl + sessionId, { source: search, swap: "none" })
      .finally(() => asked.delete(sessionId));
  });
  // A session put first that a later page lists again stays where it was put.
  document.addEventListener("htmx:afterSwap", () => {
    const seen = new Set();
    document.querySelectorAll("#sidebar li.sidebar-item").forEach((item) => {
      if (seen.has(item.id)) item.remove();
      else seen.add(item.id);
    });
  });

  // A run starting is the session's newest activity: its item moves to the top of its list.
  let started = null;
  document.addEventListener("htmx:oobBeforeSwap", (e) => {
    const incoming = e.detail.fragment && e.detail.fragment.firstElementChild;
    const target = e.detail.target;
    started = target && target.id.startsWith("sb-badge-") && target.dataset.badge === "" && incoming
      && incoming.dataset && incoming.dataset.badge ? target.closest("li.sidebar-item") : null;
  });
  document.addEventListener("htmx:oobAfterSwap", () => {
    if (started && started.parentElement) started.parentElement.prepend(started);
    started = null;
  });

  // The sidebar's own socket (pages without one of their own): the ws extension gives up on clean closes and
  // on our codes; reconnect with a jittered backoff, unless the login expired (the next page asks for it).
  let attempts = 0;
  let timer = null;
  document.addEventListener("htmx:wsOpen", (e) => { if (e.target.id === "sidebar") attempts = 0; });
  document.addEventListener("htmx:wsClose", (e) => {
    if (e.target.id !== "sidebar" || e.detail.event.code === 4401 || timer) return;
    attempts += 1;
    const delay = Math.min(30000, 500 * 2 ** Math.min(attempts, 6)) * (0.5 + Math.random() / 2);
    timer = setTimeout(() => { timer = null; e.detail.socketWrapper.reconnect(); }, delay);
  });
})();
