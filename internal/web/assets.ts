// The page script and style sheet, served as files (/static/web.js, /static/web.css): the
// Content-Security-Policy allows no inline script or style.
import { ANSI_STYLE } from "./ansi.js";

/**
 * On a live build page: follows /builds/<id>/events, appends each output event's HTML (rendered
 * and escaped by the server) to its job's output and applies status events; closes at `end`.
 * EventSource reconnects by itself and sends Last-Event-ID, so nothing is lost or repeated.
 */
export const SCRIPT = `"use strict";
(function () {
  var main = document.getElementById("build");
  if (!main || main.dataset.live !== "yes" || !window.EventSource) return;
  var id = main.dataset.build;
  var source = new EventSource("/builds/" + id + "/events?after=" + encodeURIComponent(main.dataset.after || "0"));
  function setStatus(key, status) {
    document.querySelectorAll('[data-status-for="' + key + '"]').forEach(function (el) {
      el.className = "status status-" + status;
      el.dataset.status = status;
      el.textContent = status.replace(/_/g, " ");
    });
  }
  function setText(attr, key, text) {
    document.querySelectorAll("[" + attr + '="' + key + '"]').forEach(function (el) { el.textContent = text; });
  }
  source.addEventListener("output", function (e) {
    var d = JSON.parse(e.data);
    var pre = document.querySelector('pre.output[data-job="' + d.job + '"]');
    if (!pre) return;
    var follow = window.innerHeight + window.scrollY >= document.body.scrollHeight - 40;
    pre.insertAdjacentHTML("beforeend", d.html);
    if (follow) window.scrollTo(0, document.body.scrollHeight);
  });
  source.addEventListener("status", function (e) {
    var d = JSON.parse(e.data);
    setStatus("build", d.build.status);
    setText("data-duration-for", "build", d.build.duration);
    d.stages.forEach(function (s) { setStatus("stage-" + s.id, s.status); });
    d.jobs.forEach(function (j) {
      setStatus("job-" + j.id, j.status);
      setText("data-exit-for", "job-" + j.id, j.exitCode === null ? "" : String(j.exitCode));
      setText("data-duration-for", "job-" + j.id, j.duration);
    });
  });
  source.addEventListener("end", function () {
    source.close();
    main.dataset.live = "no";
  });
})();
`;

export const STYLE = `body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #222; }
header.top { background: #223; padding: .5em 1em; } header.top a { color: #fff; text-decoration: none; font-weight: bold; }
main { padding: 1em; }
table { border-collapse: collapse; margin-bottom: 1em; } th, td { text-align: left; padding: .25em .75em; border-bottom: 1px solid #ddd; }
.status { font-weight: bold; padding: 0 .4em; border-radius: 3px; color: #fff; background: #888; white-space: nowrap; }
.status-passed { background: #2a7d2a; } .status-passed_with_failures { background: #8a7d00; } .status-failed { background: #c0392b; }
.status-killed { background: #6c3483; } .status-timed_out { background: #a04000; } .status-running { background: #2471a3; }
.status-queued, .status-skipped { background: #7f8c8d; }
pre.output, pre.manifest { background: #111; color: #ddd; padding: .75em; overflow-x: auto; white-space: pre-wrap; word-break: break-all; }
pre.manifest { background: #f4f4f4; color: #222; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .2em 1em; } dl.facts dd { margin: 0; }
ul.driver { margin: 0; padding-left: 1.2em; font-size: 90%; }
.empty, .cut { color: #777; } form.filter { margin-bottom: 1em; } nav.pages a { margin-right: 1em; }
${ANSI_STYLE}
`;
