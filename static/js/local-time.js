// Times are rendered in UTC by the server (`<time datetime="…">… UTC</time>`); show them in the reader's
// own time zone. The datetime attribute stays UTC.
(function () {
  "use strict";
  const format = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

  function localise(root) {
    for (const time of root.querySelectorAll("time[datetime]:not([data-local])")) {
      const moment = new Date(time.getAttribute("datetime"));
      if (Number.isNaN(moment.getTime())) continue;
      time.textContent = format.format(moment);
      time.title = moment.toISOString();
      time.dataset.local = "";
    }
  }

  document.addEventListener("DOMContentLoaded", () => localise(document));
  document.addEventListener("htmx:afterSettle", (e) => localise(e.detail.elt || document));
})();
