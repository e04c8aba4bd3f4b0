/* b24app app page: live job progress and small conveniences. The page works without this file
   and without the BX24 library; both only add comfort. No cookies: the page token travels in the
   X-Page-Token header. */
(function () {
  "use strict";

  function pageToken() {
    var meta = document.querySelector('meta[name="b24app-page-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  function showProgress(p) {
    var bar = document.getElementById("progress-bar");
    var percent = document.getElementById("progress-percent");
    if (bar) {
      bar.style.width = p.percent + "%";
      bar.setAttribute("aria-valuenow", String(p.percent));
    }
    if (percent) { percent.textContent = p.percent + "%"; }
    /* Count, status and time left come from the same answer as the bar, so they never disagree. */
    var texts = { "progress-count": p.count_text, "job-status": p.status_text, "progress-eta": p.eta_text };
    Object.keys(texts).forEach(function (id) {
      var node = document.getElementById(id);
      if (node && typeof texts[id] === "string") { node.textContent = texts[id]; }
    });
    var status = document.getElementById("job-status");
    if (status && p.status) { status.setAttribute("data-status", p.status); }
    /* Why a job waits is said while it waits; once a worker has it, that line would contradict
       the status. */
    var waiting = document.getElementById("job-waiting");
    if (waiting && p.status && p.status !== "pending") { waiting.parentNode.removeChild(waiting); }
  }

  function poll(box) {
    fetch(box.getAttribute("data-url"), {
      headers: { "X-Page-Token": pageToken(), "Accept": "application/json" },
      cache: "no-store",
      credentials: "omit"
    }).then(function (response) {
      if (!response.ok) { throw new Error("HTTP " + response.status); }
      return response.json();
    }).then(function (p) {
      showProgress(p);
      if (p.finished) {
        window.location.reload();  // the server renders the report
      } else {
        window.setTimeout(function () { poll(box); }, 1000);
      }
    }).catch(function () {
      window.setTimeout(function () { poll(box); }, 3000);
    });
  }

  function chooseLeadsWhenTyping() {
    var ids = document.getElementById("lead-ids");
    var chosen = document.getElementById("leads-chosen");
    if (ids && chosen) {
      ids.addEventListener("input", function () { chosen.checked = ids.value.trim() !== ""; });
    }
  }

  /* Inside the Bitrix24 iframe, load its JS library after the page is ready, so a slow or
     blocked CDN never holds the page back, and let the frame fit the content. */
  function loadBx24() {
    if (window.self === window.top) { return; }
    var script = document.createElement("script");
    script.src = "https://api.bitrix24.com/api/v1/";
    script.async = true;
    script.onload = function () {
      if (window.BX24 && typeof window.BX24.init === "function") {
        window.BX24.init(function () {
          if (typeof window.BX24.fitWindow === "function") { window.BX24.fitWindow(); }
        });
      }
    };
    document.body.appendChild(script);
  }

  document.addEventListener("DOMContentLoaded", function () {
    chooseLeadsWhenTyping();
    var box = document.getElementById("progress");
    if (box && box.getAttribute("data-finished") !== "true" && window.fetch) {
      window.setTimeout(function () { poll(box); }, 500);
    }
  });
  window.addEventListener("load", loadBx24);
}());
