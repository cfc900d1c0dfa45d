// pagonode console: refreshes the elements that name a URL in data-refresh (the live
// service-level view) every data-every milliseconds. No framework, no build.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const el of document.querySelectorAll("[data-refresh]")) {
    const every = Number(el.dataset.every) || 2000;
    const refresh = async () => {
      try {
        const answer = await fetch(el.dataset.refresh, { credentials: "same-origin" });
        if (answer.ok) {
          el.innerHTML = await answer.text();
        } else if (answer.status === 401 || answer.redirected) {
          window.location.assign("/console/login");
        }
      } catch (_) {
        // The node is restarting or unreachable: the next round tries again.
      }
    };
    setInterval(refresh, every);
  }
});
