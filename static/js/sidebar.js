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
