// Countdown for one judged solution. The server owns the timer (it stored the deadline when the item
// was first shown); this only draws the time left and, once it is gone, reloads so the server records
// the timeout and shows the next item. Measured with performance.now(), so a wrong device clock is harmless.
(function () {
  "use strict";
  var timer = document.getElementById("timer");
  if (!timer) return;
  var label = document.getElementById("timer-seconds");
  var form = document.getElementById("answer-form");
  var timeUp = document.getElementById("time-up");
  var endsAt = performance.now() + parseInt(timer.dataset.remainingMs, 10);
  var submitted = false;
  var reloading = false;

  form.addEventListener("submit", function (event) {
    // One answer per item: a double tap must not send a second form.
    if (submitted) { event.preventDefault(); return; }
    submitted = true;
    // Keep the clicked button's value: disable the buttons only after the browser has read the form.
    setTimeout(function () { form.querySelectorAll("button").forEach(function (b) { b.disabled = true; }); }, 0);
  });

  function tick() {
    var left = Math.max(0, endsAt - performance.now());
    label.textContent = String(Math.ceil(left / 1000));
    timer.classList.toggle("urgent", left <= 10000);
    if (left <= 0) {
      if (!reloading && !submitted) {
        reloading = true;
        form.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
        timeUp.hidden = false;
        // A little after the deadline, so the server's clock has passed it too.
        setTimeout(function () { window.location.reload(); }, 400);
      }
      return;
    }
    setTimeout(tick, Math.min(250, left));
  }
  tick();
})();
