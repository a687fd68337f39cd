// The session page's sharing: the Share dialog (the owner's) and the "viewing now" marks in it.
// - "Share" opens the dialog; htmx loads its body (templates/portal/fragments/share.html), and every form in it
//   answers with the body again (a refusal inline).
// - The body says whether the session is shared now (data-shared): the page shows authorship only then.
// - Members who have the page open right now (#presence, kept by the page's socket) are marked "viewing now".
(function () {
  "use strict";

  function markViewing() {
    const present = new Set(Array.from(document.querySelectorAll("#presence [data-user]"), (el) => el.dataset.user));
    document.querySelectorAll("#share-panel .share-member").forEach((row) => {
      const mark = row.querySelector(".viewing");
      if (mark) mark.hidden = !(row.dataset.user && present.has(row.dataset.user));
    });
  }

  document.addEventListener("click", (e) => {
    const open = e.target instanceof Element && e.target.closest("#share-open");
    const dialog = document.getElementById("share-dialog");
    if (open && dialog && !dialog.open) dialog.showModal(); // htmx fetches the body (hx-get on the button)
  });

  // An HTTP answer (the dialog's body among them: htmx's target is then the element it replaced) or the socket's
  // new #presence.
  function sync() {
    const panel = document.getElementById("share-panel");
    const live = document.getElementById("session-live");
    if (panel && live && panel.dataset.shared) live.toggleAttribute("data-shared", panel.dataset.shared === "true");
    markViewing();
  }
  document.addEventListener("htmx:afterSwap", sync);
  document.addEventListener("htmx:oobAfterSwap", (e) => { if (e.detail.target.id === "presence") markViewing(); });
})();
