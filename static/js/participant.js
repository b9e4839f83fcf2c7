/* The participant page: renders server snapshots, sends typed messages over one websocket.
 *
 * The server is the truth. Every snapshot describes the whole screen, so a reload, a lost
 * connection or a second tab shows exactly where the participant is. Everything typed is
 * kept locally and sent as a draft, so nothing is lost on errors or timeouts. All text from
 * the server or other people is inserted with textContent (never as HTML).
 *
 * Nothing typed is lost: what is typed and every message the server has not acknowledged yet
 * (the newest draft per phase, a submission) are kept in this tab's sessionStorage, so they
 * survive a reload, and are sent again on every (re)connect. Each message has a random ref; a
 * submission sent again keeps its ref, and the server answers a ref it already stored with the
 * original acknowledgement instead of storing it twice (deliberation/services.py
 * submission_replay).
 *
 * Every text it shows goes through gettext() / interpolate(): the page loads Django's JavaScript catalog in the
 * study's language (core/i18n.py) before this file.
 */
(function () {
  "use strict";

  var wsPath = JSON.parse(document.getElementById("ws-path").textContent);
  var completeUrl = JSON.parse(document.getElementById("complete-url").textContent);
  var app = document.getElementById("app");
  var timerEl = document.getElementById("timer");
  var errorEl = document.getElementById("error");
  var connEl = document.getElementById("connection");
  var maxBytes = JSON.parse(document.getElementById("ws-max-bytes").textContent);
  var storeKey = "participant:" + wsPath;

  var socket = null;
  var snapshot = null;
  var screenKey = null;
  var clockOffsetMs = 0;
  var reconnectDelay = 500;
  var pingTimer = null;
  var draftTimer = null;
  // Unsent choices survive re-renders and reloads: keyed by phase+round.
  var local = { text: {}, ratings: {}, ranking: {} };
  // Messages the server has not acknowledged: the newest draft per phase key, and one submission.
  var outbox = { drafts: {}, submit: null };
  var lastStatus = null;  // the status last shown: lobby -> in_group is the moment a group formed
  restore();

  function restore() {
    try {
      var saved = JSON.parse(window.sessionStorage.getItem(storeKey) || "null");
      if (saved && saved.local && saved.outbox) { local = saved.local; outbox = saved.outbox; }
    } catch (e) { /* no storage (private mode) or unreadable: start empty */ }
  }

  function persist() {
    try { window.sessionStorage.setItem(storeKey, JSON.stringify({ local: local, outbox: outbox })); }
    catch (e) { /* full or unavailable: the page still works, only a reload would lose unsent text */ }
  }

  function newRef() {
    var c = window.crypto;
    if (c && typeof c.randomUUID === "function") return c.randomUUID();
    // randomUUID needs a secure context (HTTPS or localhost); getRandomValues does not.
    var bytes = new Uint8Array(16);
    if (c && c.getRandomValues) c.getRandomValues(bytes);
    else for (var i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
    return Array.prototype.map.call(bytes, function (b) { return (b < 16 ? "0" : "") + b.toString(16); }).join("");
  }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === "text") node.textContent = attrs[key];
      else if (key === "class") node.className = attrs[key];
      else if (key.slice(0, 2) === "on") node.addEventListener(key.slice(2), attrs[key]);
      else node.setAttribute(key, attrs[key]);
    });
    (children || []).forEach(function (child) { if (child) node.appendChild(child); });
    return node;
  }

  function isOpen() { return socket !== null && socket.readyState === WebSocket.OPEN; }

  function transmit(message) {
    if (!isOpen()) return false;
    socket.send(JSON.stringify(message));
    return true;
  }

  function tooBig(message) {
    var data = JSON.stringify(message);
    var bytes = window.TextEncoder ? new TextEncoder().encode(data).length : unescape(encodeURIComponent(data)).length;
    if (bytes <= maxBytes) return false;
    showError(gettext("Your text is too long to send; please shorten it. It is kept here."));
    return true;
  }

  // A draft is kept until acknowledged, so one typed while disconnected goes out on reconnect.
  function sendDraft(key, message) {
    message.ref = newRef();
    if (tooBig(message)) return;
    outbox.drafts[key] = message;
    persist();
    transmit(message);
  }

  // A submission is kept (with its ref) until the server answers it; sent again on every reconnect.
  function submit(key, message) {
    message.ref = newRef();
    if (tooBig(message)) return;
    outbox.submit = { key: key, message: message };
    persist();
    if (!transmit(message)) {
      showError(gettext("Not connected — reconnecting. Your answer is kept and will be sent as soon as the connection is back."));
    }
    refreshButtons();
  }

  // On every (re)connect: whatever the server has not acknowledged, drafts first.
  function flush() {
    Object.keys(outbox.drafts).forEach(function (key) { transmit(outbox.drafts[key]); });
    if (outbox.submit) transmit(outbox.submit.message);
    refreshButtons();
  }

  function pendingFor(ref) {
    if (!ref) return null;
    if (outbox.submit && outbox.submit.message.ref === ref) return { submit: true, message: outbox.submit.message };
    var keys = Object.keys(outbox.drafts);
    for (var i = 0; i < keys.length; i++) {
      if (outbox.drafts[keys[i]].ref === ref) return { submit: false, key: keys[i], message: outbox.drafts[keys[i]] };
    }
    return null;
  }

  function forget(pending) {
    if (!pending) return;
    if (pending.submit) outbox.submit = null;
    else delete outbox.drafts[pending.key];
    persist();
  }

  // A submit button is disabled while its submission is on its way (or its form is incomplete), and comes
  // back when the connection drops, the server answers, or a reconnect has nothing left to send.
  function refreshButtons() {
    app.querySelectorAll("button[data-submit]").forEach(function (b) {
      var inFlight = outbox.submit !== null && outbox.submit.key === b.getAttribute("data-key") && isOpen();
      b.disabled = inFlight || b.getAttribute("data-incomplete") === "1";
    });
  }

  function showError(message) {
    errorEl.textContent = message;
    errorEl.hidden = !message;
  }

  function connect() {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + window.location.host + wsPath);
    socket.onopen = function () {
      reconnectDelay = 500;
      connEl.textContent = gettext("connected");
      connEl.className = "pill ok";
      clearInterval(pingTimer);
      pingTimer = setInterval(function () {
        transmit({ type: "ping", version: snapshot ? snapshot.version : null });
      }, 15000);
      flush();
    };
    socket.onmessage = function (event) {
      var message;
      try { message = JSON.parse(event.data); } catch (e) { return; }
      if (message.type === "snapshot") { applySnapshot(message); }
      else if (message.type === "error") { onServerError(message); }
      else if (message.type === "ack") { onAck(message); }
    };
    socket.onclose = function (event) {
      clearInterval(pingTimer);
      connEl.textContent = gettext("reconnecting…");
      connEl.className = "pill bad";
      refreshButtons();
      if (event.code === 4404) {
        app.replaceChildren(el("p", { class: "error", text: gettext("This link is not valid.") }));
        return;
      }
      if (event.code === 4409) {  // a newer window or tab of this participant took over (the server's socket cap)
        connEl.textContent = gettext("in another window");
        screenKey = null;
        app.replaceChildren(el("section", { class: "card", id: "replaced" }, [
          el("p", { text: gettext("This study was opened in another window or tab. Nothing you entered was lost.") }),
          el("button", { id: "use-here", text: gettext("Use this window"), onclick: function () { showError(""); connect(); } })
        ]));
        return;
      }
      if (event.code === 1009) {  // the server refused a message as too large: sending it again would not help
        outbox = { drafts: {}, submit: null };
        persist();
        showError(gettext("Your text was too long to send; please shorten it. It is kept here."));
      }
      setTimeout(connect, reconnectDelay);
      reconnectDelay = Math.min(reconnectDelay * 2, 10000);
    };
  }

  function onAck(message) {
    forget(pendingFor(message.ref));
    showError("");
    refreshButtons();
  }

  function onServerError(message) {
    var pending = pendingFor(message.ref);
    if (pending && message.code === "rate_limited") {  // nothing was stored: the same message again, later
      setTimeout(function () { if (pendingFor(pending.message.ref)) transmit(pending.message); },
        1000 * (message.retry_after || 1) + 100);
      return;
    }
    forget(pending);
    if (pending && pending.submit && message.code === "wrong_phase") {
      // A submission resent after the group moved on (the deadline stored the draft): the snapshot shows it.
      refreshButtons();
      return;
    }
    showError(message.message || gettext("Something went wrong."));
    refreshButtons();
  }

  function phaseKey() {
    var g = snapshot && snapshot.group;
    return g ? g.phase + ":" + g.round : "none";
  }

  function applySnapshot(next) {
    var formed = lastStatus === "lobby" && next.participant.status === "in_group";
    lastStatus = next.participant.status;
    snapshot = next;
    clockOffsetMs = Date.parse(next.server_time) - Date.now();
    if (formed) groupFormed();
    var g = next.group;
    var key = [next.participant.status, g ? g.id : 0, g ? g.phase : "", g ? g.submitted : "",
      g && g.candidates ? g.candidates.length : 0, g && g.winner ? g.winner.id : ""].join("|");
    if (key !== screenKey) {
      screenKey = key;
      showError("");
      render();
    } else {
      updateLive();
    }
    tick();
  }

  function updateLive() {
    var membersEl = document.getElementById("members");
    if (membersEl && snapshot.group) membersEl.replaceWith(membersView(snapshot.group));
    var lobbyEl = document.getElementById("lobby-count");
    if (lobbyEl && snapshot.lobby) lobbyEl.textContent = lobbyText(snapshot.lobby);
    var genEl = document.getElementById("generation-status");
    if (genEl && snapshot.group) genEl.textContent = generationText(snapshot.group);
  }

  function tick() {
    var g = snapshot && snapshot.group;
    if (g && g.paused && g.phase !== "done") {  // the study is paused: the deadline is frozen on the server
      timerEl.hidden = false;
      timerEl.className = "timer paused";
      timerEl.textContent = interpolate(
        gettext("Paused by the research team — your time is kept (%s left). You can keep writing."),
        [Math.floor(g.paused_seconds_left / 60) + ":" + String(g.paused_seconds_left % 60).padStart(2, "0")]);
      return;
    }
    if (!g || !g.deadline || g.phase === "done") { timerEl.hidden = true; return; }
    var left = Math.max(0, Math.round((Date.parse(g.deadline) - (Date.now() + clockOffsetMs)) / 1000));
    timerEl.hidden = false;
    timerEl.textContent = interpolate(gettext("Time left: %s"), [Math.floor(left / 60) + ":" + String(left % 60).padStart(2, "0")]);
    timerEl.className = left <= 30 ? "timer urgent" : "timer";
    var ready = document.getElementById("group-ready");
    if (ready) ready.textContent = groupReadyText();
  }
  setInterval(tick, 1000);

  function membersView(g) {
    return el("div", { id: "members", class: "members" }, g.members.map(function (m) {
      var label = (m.is_me ? gettext("You") : interpolate(gettext("Member %s"), [m.position])) + (m.submitted ? " ✓" : "");
      return el("span", { class: "member" + (m.submitted ? " done" : "") + (m.connected ? "" : " away"), text: label });
    }));
  }

  function lobbyText(lobby) {
    return interpolate(gettext("%(waiting)s waiting · groups of %(min)s–%(max)s"),
      { waiting: lobby.waiting, min: lobby.min_group_size, max: lobby.max_group_size }, true);
  }

  function generationText(g) {
    return g.generation_error ? gettext("The statement writer is having trouble; retrying. Please keep this page open.")
      : gettext("The AI mediator is writing statements from your group's opinions…");
  }

  // --- lobby alert: a participant waiting in a background tab is told when their group forms ----------------
  // The title flashes with the time left to write their opinion; a short tone plays (Web Audio API, no file)
  // when they ticked the box; a notification appears when they allowed notifications. Both choices are asked
  // for in the lobby, by a click, because browsers allow sound and the permission prompt only after one.
  var alertPrefs = { sound: false, notify: false };
  try { alertPrefs = JSON.parse(localStorage.getItem("lobby-alert") || "null") || alertPrefs; } catch (e) { /* private mode */ }
  var audio = null;
  var flashTimer = null;
  var pageTitle = document.title;
  var groupReadyUntil = 0;

  function savePrefs() {
    try { localStorage.setItem("lobby-alert", JSON.stringify(alertPrefs)); } catch (e) { /* private mode */ }
  }

  function unlockAudio() {
    var Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return null;
    if (!audio) audio = new Ctx();
    if (audio.state === "suspended") audio.resume();
    return audio;
  }

  function tone() {
    var ctx = unlockAudio();
    if (!ctx) return;
    [0, 0.35].forEach(function (start) {
      var osc = ctx.createOscillator();
      var gain = ctx.createGain();
      osc.frequency.value = 880;
      gain.gain.value = 0.2;
      osc.connect(gain);
      gain.connect(ctx.destination);
      osc.start(ctx.currentTime + start);
      osc.stop(ctx.currentTime + start + 0.25);
    });
  }

  function timeLeftText() {
    var g = snapshot && snapshot.group;
    if (!g || !g.deadline) return "";
    var left = Math.max(0, Math.round((Date.parse(g.deadline) - (Date.now() + clockOffsetMs)) / 1000));
    return Math.floor(left / 60) + ":" + String(left % 60).padStart(2, "0");
  }

  function stopFlash() {
    clearInterval(flashTimer);
    flashTimer = null;
    document.title = pageTitle;
  }

  function groupFormed() {
    groupReadyUntil = Date.now() + 60000;  // the banner on the page, for a minute
    if (!document.hidden) return;
    var on = false;
    clearInterval(flashTimer);
    flashTimer = setInterval(function () {
      on = !on;
      document.title = on ? flashTitle() : pageTitle;
    }, 1000);
    document.title = flashTitle();
    if (alertPrefs.sound) tone();
    if (alertPrefs.notify && window.Notification && Notification.permission === "granted") {
      try {
        var note = new Notification(gettext("Your group is ready"), { body: gettext("Please come back to the study page.") });
        note.onclick = function () { window.focus(); note.close(); };
      } catch (e) { /* some mobile browsers allow notifications only from a service worker */ }
    }
  }

  function flashTitle() {
    return interpolate(gettext("(%s) Your group is ready!"), [timeLeftText()]);
  }

  document.addEventListener("visibilitychange", function () { if (!document.hidden) stopFlash(); });
  window.addEventListener("focus", stopFlash);

  function lobbyAlertControls() {
    var sound = el("input", { type: "checkbox", id: "alert-sound" });
    sound.checked = !!alertPrefs.sound;
    sound.addEventListener("change", function () {
      alertPrefs.sound = sound.checked;
      savePrefs();
      if (sound.checked) unlockAudio();  // this click lets the page play the tone later
    });
    var nodes = [el("label", { class: "check" }, [sound, document.createTextNode(" " + gettext("Play a sound when my group is ready"))])];
    if (window.Notification && Notification.permission !== "denied") {
      var notify = el("input", { type: "checkbox", id: "alert-notify" });
      notify.checked = !!alertPrefs.notify && Notification.permission === "granted";
      notify.addEventListener("change", function () {
        alertPrefs.notify = notify.checked;
        savePrefs();
        if (notify.checked && Notification.permission === "default") {
          Notification.requestPermission().then(function (answer) {
            if (answer !== "granted") { notify.checked = false; alertPrefs.notify = false; savePrefs(); }
          });
        }
      });
      nodes.push(el("label", { class: "check" }, [notify, document.createTextNode(" " + gettext("Show a notification too"))]));
    }
    nodes.push(el("p", { class: "muted", text: gettext("If this page is in the background, its title will flash when your group is ready.") }));
    return el("div", { id: "lobby-alert" }, nodes);
  }

  function groupReadyText() {
    return interpolate(gettext("Your group is ready. Time left for this step: %s"), [timeLeftText()]);
  }

  function groupReadyBanner() {
    return el("p", { class: "notice", id: "group-ready", role: "status", text: groupReadyText() });
  }

  function render() {
    var p = snapshot.participant;
    var g = snapshot.group;
    var nodes = [];
    if (p.status === "lobby") {
      nodes.push(el("section", { class: "card", id: "lobby" }, [
        el("h2", { text: gettext("Waiting for other participants") }),
        el("p", { text: gettext("You will be put into a group as soon as enough people have arrived. Please keep this page open.") }),
        el("p", { class: "muted", id: "lobby-count", text: lobbyText(snapshot.lobby) }),
        lobbyAlertControls()
      ]));
    } else if (p.status === "lobby_timeout" || ((p.status === "dropped") && !g)) {
      nodes.push(finishedCard(gettext("Not enough participants arrived to form a group. Thank you for waiting.")));
    } else if (p.status === "withdrawn") {
      nodes.push(finishedCard(gettext("You have withdrawn from the study.")));
    } else if (p.status === "screened_out" || p.status === "screening") {
      window.location.href = completeUrl;  // the server sends them to their screening or completion page
    } else if (g) {
      if (p.status === "in_group" && Date.now() < groupReadyUntil) nodes.push(groupReadyBanner());
      nodes.push(el("section", { class: "card" }, [
        el("p", { class: "muted", text: gettext("Question") }),
        el("p", { class: "question", id: "question", text: g.question }),
        membersView(g)
      ]));
      nodes.push(phaseView(g, p));
    }
    app.replaceChildren.apply(app, nodes);
    var withdrawLink = document.getElementById("withdraw-link");
    if (withdrawLink) withdrawLink.hidden = p.status === "withdrawn" || !!p.completion_code;
    refreshButtons();
  }

  function finishedCard(message) {
    return el("section", { class: "card", id: "finished" }, [
      el("h2", { text: message }),
      el("a", { class: "button", id: "finish-link", href: completeUrl, text: gettext("Continue") })
    ]);
  }

  function phaseView(g, p) {
    switch (g.phase) {
      case "opinion": return g.submitted ? waitingCard(gettext("Your opinion"), g.my_opinion) : textForm(g, "opinion");
      case "generating":
      case "revising":
        return el("section", { class: "card", id: "generating" }, [
          el("h2", { text: g.phase === "revising" ? gettext("Revising the statement…") : gettext("Writing statements…") }),
          el("p", { id: "generation-status", text: generationText(g) })
        ]);
      case "rating":
      case "final_rating":
        return g.submitted ? waitingCard(null, null) : ratingForm(g);
      case "critique":
        return g.submitted ? waitingCard(gettext("Your critique"), g.my_critique) : textForm(g, "critique");
      case "done":
        return el("section", { class: "card", id: "done" }, [
          el("h2", { text: gettext("The group's final statement") }),
          g.winner ? el("p", { class: "statement", id: "final-statement", text: g.winner.text }) : null,
          el("p", { text: gettext("Thank you for taking part.") }),
          el("a", { class: "button", id: "finish-link", href: completeUrl, text: gettext("Finish") })
        ]);
      default:
        return el("p", { text: gettext("Please wait…") });
    }
  }

  function waitingCard(title, text) {
    return el("section", { class: "card", id: "waiting" }, [
      el("h2", { text: gettext("Thank you — waiting for the rest of your group") }),
      title ? el("p", { class: "muted", text: title }) : null,
      text ? el("p", { class: "statement", text: text }) : null
    ]);
  }

  function textForm(g, kind) {
    var max = snapshot.study.max_text_chars;
    var key = phaseKey();
    var initial = local.text[key];
    if (initial === undefined) initial = (g.draft && g.draft.text) || "";
    var children = [];
    if (kind === "opinion") {
      children.push(el("h2", { text: gettext("What do you think?") }));
      children.push(el("p", { text: gettext("Write your opinion on the question in a few sentences.") }));
      // Who sees the opinion depends on the study's settings; the server writes this line (participants/consent.py).
      children.push(el("p", { class: "muted", id: "opinion-notice", text: snapshot.study.opinion_notice || "" }));
    } else {
      children.push(el("h2", { text: gettext("Critique the chosen statement") }));
      children.push(el("p", { class: "statement card", id: "winner-statement", text: g.winner ? g.winner.text : "" }));
      children.push(el("p", { text: gettext("What would you change so that it better reflects your view and the group's? The mediator will revise it.") }));
    }
    var area = el("textarea", { id: kind + "-text", maxlength: String(max * 2), "aria-label": kind === "opinion" ? pgettext("text field", "opinion") : pgettext("text field", "critique") });
    area.value = initial;
    var counter = el("div", { class: "counter", id: kind + "-counter" });
    var button = el("button", { id: kind + "-submit", "data-submit": "1", "data-key": key, text: gettext("Submit") });
    function update() {
      local.text[key] = area.value;
      persist();
      counter.textContent = area.value.length + " / " + max;
      counter.className = area.value.length > max ? "counter over" : "counter";
      clearTimeout(draftTimer);
      draftTimer = setTimeout(function () { sendDraft(key, { type: "draft", phase: g.phase, text: area.value }); }, 1200);
    }
    area.addEventListener("input", update);
    button.addEventListener("click", function () {
      if (area.value.length > max) {
        showError(interpolate(gettext("Your text is %(length)s characters long; the limit is %(limit)s. Please shorten it."),
          { length: area.value.length, limit: max }, true));
        return;
      }
      if (!area.value.trim()) { showError(gettext("Please write something first.")); return; }
      // The draft goes first, so the server holds the newest text even if the submission is refused.
      clearTimeout(draftTimer);
      sendDraft(key, { type: "draft", phase: g.phase, text: area.value });
      submit(key, { type: kind === "opinion" ? "submit_opinion" : "submit_critique", text: area.value });
    });
    children.push(area, counter, button);
    var section = el("section", { class: "card", id: kind + "-form" }, children);
    setTimeout(function () { counter.textContent = area.value.length + " / " + max; }, 0);
    return section;
  }

  function scale(name, labels, current, onchange) {
    var grid = el("div", { class: "scale", role: "radiogroup" });
    for (var v = 1; v <= 7; v++) {
      var input = el("input", { type: "radio", name: name, value: String(v) });
      if (current === v) input.checked = true;
      input.addEventListener("change", function (e) { onchange(parseInt(e.target.value, 10)); });
      grid.appendChild(el("label", {}, [input, el("span", { text: String(v) })]));
    }
    return el("div", {}, [grid, el("div", { class: "scale-ends" }, [
      el("span", { text: labels[0] }), el("span", { text: labels[1] })])]);
  }

  function ratingForm(g) {
    var key = phaseKey();
    var serverDraft = g.draft || {};
    var ratings = local.ratings[key] || (local.ratings[key] = JSON.parse(JSON.stringify(serverDraft.ratings || {})));
    var ids = g.candidates.map(function (c) { return c.id; });
    var ranking = local.ranking[key];
    if (!ranking) {
      var fromDraft = (serverDraft.ranking || []).filter(function (id) { return ids.indexOf(id) >= 0; });
      ranking = local.ranking[key] = fromDraft.length === ids.length ? fromDraft : ids.slice();
    }
    var byId = {};
    g.candidates.forEach(function (c) { byId[c.id] = c; });
    var button = el("button", { id: "ratings-submit", "data-submit": "1", "data-key": key,
      text: gettext("Submit ratings and ranking") });

    function markComplete() {
      var complete = ids.every(function (id) { var r = ratings[id]; return r && r.agreement && r.quality; });
      button.setAttribute("data-incomplete", complete ? "0" : "1");
      refreshButtons();
    }

    function saveDraft() {
      persist();
      clearTimeout(draftTimer);
      draftTimer = setTimeout(function () {
        sendDraft(key, { type: "draft", phase: g.phase, ratings: ratings, ranking: ranking });
      }, 800);
      markComplete();
    }

    var cards = g.candidates.map(function (c, i) {
      var r = ratings[c.id] || (ratings[c.id] = {});
      return el("div", { class: "card candidate", "data-candidate": String(c.id) }, [
        el("p", { class: "muted", text: interpolate(gettext("Statement %s"), [String.fromCharCode(65 + i)]) }),
        el("p", { class: "statement", text: c.text }),
        el("p", { text: gettext("How much do you agree with this statement?") }),
        scale("agree-" + c.id, [gettext("strongly disagree"), gettext("strongly agree")], r.agreement, function (v) { r.agreement = v; saveDraft(); }),
        el("p", { text: gettext("How good is it as a statement of the group's view?") }),
        scale("quality-" + c.id, [gettext("terrible"), gettext("excellent")], r.quality, function (v) { r.quality = v; saveDraft(); })
      ]);
    });
    var letter = {};
    g.candidates.forEach(function (c, i) { letter[c.id] = String.fromCharCode(65 + i); });
    var list = el("ol", { class: "rank-list", id: "rank-list" });
    function drawRanking() {
      list.replaceChildren.apply(list, ranking.map(function (id, pos) {
        var up = el("button", { class: "secondary", "aria-label": gettext("move up"), text: "↑" });
        var down = el("button", { class: "secondary", "aria-label": gettext("move down"), text: "↓" });
        up.disabled = pos === 0;
        down.disabled = pos === ranking.length - 1;
        up.addEventListener("click", function () { move(pos, -1); });
        down.addEventListener("click", function () { move(pos, 1); });
        return el("li", { "data-candidate": String(id) }, [
          el("strong", { text: (pos + 1) + "." }),
          el("span", { class: "text", text: letter[id] + ": " + byId[id].text.slice(0, 90) + (byId[id].text.length > 90 ? "…" : "") }),
          up, down
        ]);
      }));
    }
    function move(pos, delta) {
      var other = pos + delta;
      var tmp = ranking[pos]; ranking[pos] = ranking[other]; ranking[other] = tmp;
      drawRanking();
      saveDraft();
    }
    drawRanking();
    button.addEventListener("click", function () {
      clearTimeout(draftTimer);
      sendDraft(key, { type: "draft", phase: g.phase, ratings: ratings, ranking: ranking });
      submit(key, {
        type: "submit_ratings", round: g.round, ranking: ranking.slice(),
        ratings: ids.map(function (id) {
          return { candidate_id: id, agreement: ratings[id].agreement, quality: ratings[id].quality };
        })
      });
    });
    var title = g.phase === "final_rating" ? gettext("Rate the revised statements") : gettext("Rate the statements");
    var section = el("section", { id: "rating-form" }, [el("h2", { text: title })].concat(cards).concat([
      el("section", { class: "card" }, [
        el("h2", { text: gettext("Rank them, best first") }),
        el("p", { class: "muted", text: gettext("Use the arrows to order the statements from the one you prefer most to the one you prefer least.") }),
        list
      ]),
      button
    ]));
    var complete = ids.every(function (id) { var r = ratings[id]; return r && r.agreement && r.quality; });
    button.setAttribute("data-incomplete", complete ? "0" : "1");
    button.disabled = !complete;
    return section;
  }

  connect();
})();
