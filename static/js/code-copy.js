// Copy buttons on code blocks in rendered answers (harness/portal/markdown.py renders them; the sanitiser lets
// no script or handler through, so the behaviour lives here, delegated from the document).
(function () {
  "use strict";

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
    // Plain-http deployments have no Clipboard API: the old way, through a selection.
    return new Promise((resolve, reject) => {
      const area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.style.position = "fixed";
      area.style.opacity = "0";
      document.body.appendChild(area);
      area.select();
      const ok = document.execCommand("copy");
      area.remove();
      (ok ? resolve : reject)();
    });
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest(".code-copy");
    const code = button && button.closest(".code-block")?.querySelector("pre");
    if (!code) return;
    copyText(code.innerText).then(
      () => { button.textContent = "Copied"; },
      () => { button.textContent = "Copy failed"; },
    ).finally(() => setTimeout(() => { button.textContent = "Copy"; }, 2000));
  });
})();
