// The Clarion console's live updates: the page's fragments, pushed by the server as server-sent events
// (clarion/console/live.py), swapped in by id. No framework, no eval, nothing inline: the page's
// Content-Security-Policy allows scripts from /console/static only. Without JavaScript the pages still
// work; they are simply not live.
(function () {
  "use strict";
  var url = document.body.getAttribute("data-live");
  if (!url || !window.EventSource) { return; }
  var state = document.getElementById("live-state");
  var source = new EventSource(url);
  function say(text) { if (state && state.textContent !== text) { state.textContent = text; } }
  source.addEventListener("fragment", function (event) {
    var data = JSON.parse(event.data);
    var target = document.getElementById(data.id);
    if (!target) { return; }
    var active = document.activeElement;
    if (active && target.contains(active) && active.tagName === "INPUT" && active.value) { return; }
    target.innerHTML = data.html;
    document.body.setAttribute("data-updated", String(Date.now()));
  });
  source.addEventListener("signed-out", function () {
    source.close();
    window.location.assign((document.body.getAttribute("data-base") || "") + "/sign-in");
  });
  source.addEventListener("open", function () { say("Live: updates as the ledger changes."); });
  source.addEventListener("error", function () { say("Reconnecting to live updates…"); });
}());
