/* The participant page: renders server snapshots, sends typed messages over one websocket.
 *
 * The server is the truth. Every snapshot describes the whole screen, so a reload, a lost
 * connection or a second tab shows exactly where the participant is. Everything typed is
 * kept locally and sent as a draft, so nothing is lost on errors or timeouts. All text from
 * the server or other people is inserted with textContent (never as HTML).
 */
(function () {
  "use strict";

  var wsPath = JSON.parse(document.getElementById("ws-path").textContent);
  var completeUrl = JSON.parse(document.getElementById("complete-url").textContent);
  var app = document.getElementById("app");
  var timerEl = document.getElementById("timer");
  var errorEl = document.getElementById("error");
  var connEl = document.getElementById("connection");

  var socket = null;
  var snapshot = null;
  var screenKey = null;
  var clockOffsetMs = 0;
  var reconnectDelay = 500;
  var pingTimer = null;
  var draftTimer = null;
  var refCounter = 0;
  // Unsent choices survive re-renders: keyed by phase+round.
  var local = { text: {}, ratings: {}, ranking: {} };

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

  function send(message) {
    if (!socket || socket.readyState !== WebSocket.OPEN) {
      showError("Not connected — reconnecting. Your text is kept; please try again in a moment.");
      return false;
    }
    message.ref = message.ref || "m" + (++refCounter);
    socket.send(JSON.stringify(message));
    return true;
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
      connEl.textContent = "connected";
      connEl.className = "pill ok";
      clearInterval(pingTimer);
      pingTimer = setInterval(function () {
        send({ type: "ping", version: snapshot ? snapshot.version : null });
      }, 15000);
    };
    socket.onmessage = function (event) {
      var message;
      try { message = JSON.parse(event.data); } catch (e) { return; }
      if (message.type === "snapshot") { applySnapshot(message); }
      else if (message.type === "error") { onServerError(message); }
      else if (message.type === "ack") { showError(""); }
    };
    socket.onclose = function (event) {
      clearInterval(pingTimer);
      connEl.textContent = "reconnecting…";
      connEl.className = "pill bad";
      if (event.code === 4404) {
        app.replaceChildren(el("p", { class: "error", text: "This link is not valid." }));
        return;
      }
      setTimeout(connect, reconnectDelay);
      reconnectDelay = Math.min(reconnectDelay * 2, 10000);
    };
  }

  function onServerError(message) {
    showError(message.message || "Something went wrong.");
    var buttons = app.querySelectorAll("button[data-submit]");
    buttons.forEach(function (b) { b.disabled = false; });
  }

  function phaseKey() {
    var g = snapshot && snapshot.group;
    return g ? g.phase + ":" + g.round : "none";
  }

  function applySnapshot(next) {
    snapshot = next;
    clockOffsetMs = Date.parse(next.server_time) - Date.now();
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
    if (!g || !g.deadline || g.phase === "done") { timerEl.hidden = true; return; }
    var left = Math.max(0, Math.round((Date.parse(g.deadline) - (Date.now() + clockOffsetMs)) / 1000));
    timerEl.hidden = false;
    timerEl.textContent = "Time left: " + Math.floor(left / 60) + ":" + String(left % 60).padStart(2, "0");
    timerEl.className = left <= 30 ? "timer urgent" : "timer";
  }
  setInterval(tick, 1000);

  function membersView(g) {
    return el("div", { id: "members", class: "members" }, g.members.map(function (m) {
      var label = (m.is_me ? "You" : "Member " + m.position) + (m.submitted ? " ✓" : "");
      return el("span", { class: "member" + (m.submitted ? " done" : "") + (m.connected ? "" : " away"), text: label });
    }));
  }

  function lobbyText(lobby) {
    return lobby.waiting + " waiting · groups of " + lobby.min_group_size + "–" + lobby.max_group_size;
  }

  function generationText(g) {
    return g.generation_error ? "The statement writer is having trouble; retrying. Please keep this page open."
      : "The AI mediator is writing statements from your group's opinions…";
  }

  function render() {
    var p = snapshot.participant;
    var g = snapshot.group;
    var nodes = [];
    if (p.status === "lobby") {
      nodes.push(el("section", { class: "card", id: "lobby" }, [
        el("h2", { text: "Waiting for other participants" }),
        el("p", { text: "You will be put into a group as soon as enough people have arrived. Please keep this page open." }),
        el("p", { class: "muted", id: "lobby-count", text: lobbyText(snapshot.lobby) })
      ]));
    } else if (p.status === "lobby_timeout" || ((p.status === "dropped") && !g)) {
      nodes.push(finishedCard("Not enough participants arrived to form a group. Thank you for waiting."));
    } else if (g) {
      nodes.push(el("section", { class: "card" }, [
        el("p", { class: "muted", text: "Question" }),
        el("p", { class: "question", id: "question", text: g.question }),
        membersView(g)
      ]));
      nodes.push(phaseView(g, p));
    }
    app.replaceChildren.apply(app, nodes);
  }

  function finishedCard(message) {
    return el("section", { class: "card", id: "finished" }, [
      el("h2", { text: message }),
      el("a", { class: "button", id: "finish-link", href: completeUrl, text: "Continue" })
    ]);
  }

  function phaseView(g, p) {
    switch (g.phase) {
      case "opinion": return g.submitted ? waitingCard("Your opinion", g.my_opinion) : textForm(g, "opinion");
      case "generating":
      case "revising":
        return el("section", { class: "card", id: "generating" }, [
          el("h2", { text: g.phase === "revising" ? "Revising the statement…" : "Writing statements…" }),
          el("p", { id: "generation-status", text: generationText(g) })
        ]);
      case "rating":
      case "final_rating":
        return g.submitted ? waitingCard(null, null) : ratingForm(g);
      case "critique":
        return g.submitted ? waitingCard("Your critique", g.my_critique) : textForm(g, "critique");
      case "done":
        return el("section", { class: "card", id: "done" }, [
          el("h2", { text: "The group's final statement" }),
          g.winner ? el("p", { class: "statement", id: "final-statement", text: g.winner.text }) : null,
          el("p", { text: "Thank you for taking part." }),
          el("a", { class: "button", id: "finish-link", href: completeUrl, text: "Finish" })
        ]);
      default:
        return el("p", { text: "Please wait…" });
    }
  }

  function waitingCard(title, text) {
    return el("section", { class: "card", id: "waiting" }, [
      el("h2", { text: "Thank you — waiting for the rest of your group" }),
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
      children.push(el("h2", { text: "What do you think?" }));
      children.push(el("p", { text: "Write your opinion on the question in a few sentences." }));
      // Who sees the opinion depends on the study's settings; the server writes this line (participants/consent.py).
      children.push(el("p", { class: "muted", id: "opinion-notice", text: snapshot.study.opinion_notice || "" }));
    } else {
      children.push(el("h2", { text: "Critique the chosen statement" }));
      children.push(el("p", { class: "statement card", id: "winner-statement", text: g.winner ? g.winner.text : "" }));
      children.push(el("p", { text: "What would you change so that it better reflects your view and the group's? The mediator will revise it." }));
    }
    var area = el("textarea", { id: kind + "-text", maxlength: String(max * 2), "aria-label": kind });
    area.value = initial;
    var counter = el("div", { class: "counter", id: kind + "-counter" });
    var button = el("button", { id: kind + "-submit", "data-submit": "1", text: "Submit" });
    function update() {
      local.text[key] = area.value;
      counter.textContent = area.value.length + " / " + max;
      counter.className = area.value.length > max ? "counter over" : "counter";
      clearTimeout(draftTimer);
      draftTimer = setTimeout(function () { send({ type: "draft", phase: g.phase, text: area.value }); }, 1200);
    }
    area.addEventListener("input", update);
    button.addEventListener("click", function () {
      if (area.value.length > max) {
        showError("Your text is " + area.value.length + " characters long; the limit is " + max + ". Please shorten it.");
        return;
      }
      if (!area.value.trim()) { showError("Please write something first."); return; }
      button.disabled = true;
      send({ type: kind === "opinion" ? "submit_opinion" : "submit_critique", text: area.value });
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
    var button = el("button", { id: "ratings-submit", "data-submit": "1", text: "Submit ratings and ranking" });

    function saveDraft() {
      clearTimeout(draftTimer);
      draftTimer = setTimeout(function () {
        send({ type: "draft", phase: g.phase, ratings: ratings, ranking: ranking });
      }, 800);
      var complete = ids.every(function (id) { var r = ratings[id]; return r && r.agreement && r.quality; });
      button.disabled = !complete;
    }

    var cards = g.candidates.map(function (c, i) {
      var r = ratings[c.id] || (ratings[c.id] = {});
      return el("div", { class: "card candidate", "data-candidate": String(c.id) }, [
        el("p", { class: "muted", text: "Statement " + String.fromCharCode(65 + i) }),
        el("p", { class: "statement", text: c.text }),
        el("p", { text: "How much do you agree with this statement?" }),
        scale("agree-" + c.id, ["strongly disagree", "strongly agree"], r.agreement, function (v) { r.agreement = v; saveDraft(); }),
        el("p", { text: "How good is it as a statement of the group's view?" }),
        scale("quality-" + c.id, ["terrible", "excellent"], r.quality, function (v) { r.quality = v; saveDraft(); })
      ]);
    });
    var letter = {};
    g.candidates.forEach(function (c, i) { letter[c.id] = String.fromCharCode(65 + i); });
    var list = el("ol", { class: "rank-list", id: "rank-list" });
    function drawRanking() {
      list.replaceChildren.apply(list, ranking.map(function (id, pos) {
        var up = el("button", { class: "secondary", "aria-label": "move up", text: "↑" });
        var down = el("button", { class: "secondary", "aria-label": "move down", text: "↓" });
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
      button.disabled = true;
      send({
        type: "submit_ratings", round: g.round, ranking: ranking.slice(),
        ratings: ids.map(function (id) {
          return { candidate_id: id, agreement: ratings[id].agreement, quality: ratings[id].quality };
        })
      });
    });
    var title = g.phase === "final_rating" ? "Rate the revised statements" : "Rate the statements";
    var section = el("section", { id: "rating-form" }, [el("h2", { text: title })].concat(cards).concat([
      el("section", { class: "card" }, [
        el("h2", { text: "Rank them, best first" }),
        el("p", { class: "muted", text: "Use the arrows to order the statements from the one you prefer most to the one you prefer least." }),
        list
      ]),
      button
    ]));
    var complete = ids.every(function (id) { var r = ratings[id]; return r && r.agreement && r.quality; });
    button.disabled = !complete;
    return section;
  }

  connect();
})();
