/* qamrec web page: a chat box, recommended movie cards, refinement chips and the model's attention.
 * Plain JS, no build step. Every string that comes from the API is put in the page with textContent. */
(function () {
  "use strict";

  var K = 12;
  var STORAGE_KEY = "qamrec.session";

  var els = {
    messages: document.getElementById("messages"),
    emptyHint: document.getElementById("empty-hint"),
    composer: document.getElementById("composer"),
    input: document.getElementById("chat-input"),
    send: document.getElementById("send"),
    error: document.getElementById("error"),
    grid: document.getElementById("grid"),
    status: document.getElementById("status"),
    suggestionsWrap: document.getElementById("suggestions-wrap"),
    suggestions: document.getElementById("suggestions"),
    attended: document.getElementById("attended"),
    attendedEmpty: document.getElementById("attended-empty"),
    modalities: document.getElementById("modalities"),
    modalitiesWrap: document.getElementById("modalities-wrap"),
    newConversation: document.getElementById("new-conversation"),
    understood: document.getElementById("understood"),
  };

  var state = {
    sessionId: null,
    recs: null,
    busy: false,
    votes: {}, // movie id -> "liked" | "disliked"
    renders: 0,
  };

  /* ---------- small helpers ---------- */

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  var SVG_NS = "http://www.w3.org/2000/svg";
  var ICONS = {
    like: "M7 10v11H3V10h4zm2 11h8.3a2 2 0 0 0 2-1.6l1.4-7A2 2 0 0 0 18.7 10H14V5.5A2.5 2.5 0 0 0 11.5 3L9 10v11z",
    dislike: "M17 14V3h4v11h-4zm-2-11H6.7a2 2 0 0 0-2 1.6l-1.4 7A2 2 0 0 0 5.3 14H10v4.5a2.5 2.5 0 0 0 2.5 2.5L15 14V3z",
    film: "M4 4h16v16H4V4zm2 2v2h2V6H6zm10 0v2h2V6h-2zM6 10v4h2v-4H6zm10 0v4h2v-4h-2zM6 16v2h2v-2H6zm10 0v2h2v-2h-2zM10 6v12h4V6h-4z",
  };

  function icon(name) {
    var svg = document.createElementNS(SVG_NS, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    var path = document.createElementNS(SVG_NS, "path");
    path.setAttribute("d", ICONS[name]);
    svg.appendChild(path);
    return svg;
  }

  function storageGet() {
    try { return window.localStorage.getItem(STORAGE_KEY); } catch (e) { return null; }
  }
  function storageSet(value) {
    try {
      if (value) window.localStorage.setItem(STORAGE_KEY, value);
      else window.localStorage.removeItem(STORAGE_KEY);
    } catch (e) { /* storage unavailable: the session just won't survive a reload */ }
  }

  function ApiError(status, message) {
    this.status = status;
    this.message = message;
  }

  function describeDetail(detail) {
    if (detail === undefined || detail === null) return null;
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) {
      // FastAPI validation errors: [{loc: [...], msg: "..."}]
      return detail.map(function (d) {
        if (d && typeof d === "object") {
          var where = Array.isArray(d.loc) ? d.loc.filter(function (x) { return x !== "body"; }).join(".") : "";
          return (where ? where + ": " : "") + (d.msg || JSON.stringify(d));
        }
        return String(d);
      }).join("; ");
    }
    if (typeof detail === "object" && detail.message) return String(detail.message);
    return JSON.stringify(detail);
  }

  // Relative to the page (the page is served at "/"), so a path prefix in front of the service still works.
  function api(method, path, body, retried) {
    var opts = { method: method, headers: { "Accept": "application/json" } };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    return fetch(path, opts).then(function (res) {
      if (res.status === 401 && !retried) {
        // The service has an API key: ask once, keep it in a same-site cookie (sent with posters too), retry.
        var key = window.prompt("This service needs an API key:");
        if (key) {
          document.cookie = "qamrec_api_key=" + encodeURIComponent(key) + "; path=/; SameSite=Strict";
          return api(method, path, body, true);
        }
      }
      return res.text().then(function (text) {
        var data = null;
        if (text) {
          try { data = JSON.parse(text); } catch (e) { data = null; }
        }
        if (!res.ok) {
          var msg = describeDetail(data && data.detail) || (res.status + " " + (res.statusText || "error"));
          throw new ApiError(res.status, msg);
        }
        return data;
      });
    }, function () {
      throw new ApiError(0, "Could not reach the recommendation service. Is it running?");
    });
  }

  /* ---------- rendering ---------- */

  function showError(message) {
    els.error.textContent = "";
    els.error.appendChild(el("span", "error-text", message));
    var close = el("button", "error-close", "×");
    close.type = "button";
    close.setAttribute("aria-label", "dismiss error");
    close.addEventListener("click", clearError);
    els.error.appendChild(close);
    els.error.hidden = false;
  }

  function clearError() {
    els.error.hidden = true;
    els.error.textContent = "";
  }

  function setBusy(busy, label) {
    state.busy = busy;
    document.body.classList.toggle("is-busy", busy);
    document.body.setAttribute("aria-busy", busy ? "true" : "false");
    els.send.disabled = busy;
    els.status.textContent = busy ? (label || "Thinking…") : statusText();
    var buttons = document.querySelectorAll(".card button, .chip button");
    for (var i = 0; i < buttons.length; i++) buttons[i].disabled = busy;
    if (busy && !(state.recs && state.recs.movies && state.recs.movies.length)) renderSkeleton();
  }

  function statusText() {
    if (!state.recs) return "";
    var n = (state.recs.movies || []).length;
    var round = state.recs.round ? " · round " + state.recs.round : "";
    return n + (n === 1 ? " movie" : " movies") + round;
  }

  // role: "user" (the person, on the right) or "system" (the recommender's reply, on the left)
  function addMessage(text, at, role) {
    var li = el("li", role === "system" ? "bubble bubble-system" : "bubble bubble-user");
    li.setAttribute("data-role", role === "system" ? "system" : "user");
    li.appendChild(el("p", "bubble-text", text));
    if (at) {
      var d = new Date(at * 1000);
      if (!isNaN(d.getTime())) {
        var time = el("time", "bubble-time", d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }));
        time.dateTime = d.toISOString();
        li.appendChild(time);
      }
    }
    els.messages.appendChild(li);
    els.emptyHint.hidden = true;
    els.messages.scrollTop = els.messages.scrollHeight;
    return li;
  }

  function addNote(text) {
    var li = el("li", "note", text);
    els.messages.appendChild(li);
    els.messages.scrollTop = els.messages.scrollHeight;
  }

  function clearMessages() {
    els.messages.textContent = "";
    els.emptyHint.hidden = false;
  }

  function hueFor(id) {
    var n = Math.abs(Number(id) || 0);
    return (n * 47) % 360;
  }

  function placeholder(movie) {
    var ph = el("div", "poster-placeholder");
    ph.style.setProperty("--hue", String(hueFor(movie.id)));
    ph.appendChild(icon("film"));
    ph.appendChild(el("span", "poster-placeholder-title", movie.title || "Untitled"));
    return ph;
  }

  function renderPoster(movie) {
    var wrap = el("div", "poster");
    if (movie.poster_url) {
      var img = document.createElement("img");
      img.loading = "lazy";
      img.decoding = "async";
      img.alt = "Poster of " + (movie.title || "movie");
      img.addEventListener("load", function () { wrap.classList.add("loaded"); });
      img.addEventListener("error", function () {
        if (img.parentNode === wrap) wrap.replaceChild(placeholder(movie), img);
        wrap.classList.add("loaded");
      });
      img.src = movie.poster_url;
      wrap.appendChild(img);
    } else {
      wrap.appendChild(placeholder(movie));
      wrap.classList.add("loaded");
    }
    return wrap;
  }

  function titleWithYear(movie) {
    return (movie.title || "Untitled") + (movie.year ? " (" + movie.year + ")" : "");
  }

  function voteButton(movie, value) {
    var isLike = value === "liked";
    var btn = el("button", "vote " + (isLike ? "like" : "dislike"));
    btn.type = "button";
    btn.setAttribute("aria-label", (isLike ? "like " : "dislike ") + (movie.title || "movie"));
    btn.title = isLike ? "More like this" : "Not for me";
    btn.setAttribute("aria-pressed", state.votes[movie.id] === value ? "true" : "false");
    btn.appendChild(icon(isLike ? "like" : "dislike"));
    btn.disabled = state.busy;
    btn.addEventListener("click", function () { vote(movie, value); });
    return btn;
  }

  function renderCard(movie, index) {
    var card = el("article", "card");
    card.setAttribute("data-movie-id", String(movie.id));
    card.style.setProperty("--i", String(Math.min(index, 20)));
    var voteState = state.votes[movie.id];
    if (voteState) card.classList.add("is-" + voteState);

    card.appendChild(renderPoster(movie));

    var badge = el("span", "vote-badge", voteState === "liked" ? "Liked" : voteState === "disliked" ? "Not for me" : "");
    card.appendChild(badge);

    var body = el("div", "card-body");
    var h = el("h3", "card-title");
    h.appendChild(el("span", "card-title-text", movie.title || "Untitled"));
    if (movie.year) h.appendChild(el("span", "card-year", " (" + movie.year + ")"));
    h.title = titleWithYear(movie);
    body.appendChild(h);

    if (movie.genres && movie.genres.length) {
      var genres = el("ul", "genres");
      movie.genres.slice(0, 4).forEach(function (g) { genres.appendChild(el("li", "genre", g)); });
      body.appendChild(genres);
    }
    if (movie.reason) body.appendChild(el("p", "reason", movie.reason));

    var foot = el("div", "card-foot");
    var score = el("span", "score", "score " + (typeof movie.score === "number" ? movie.score.toFixed(3) : String(movie.score)));
    score.title = "model score";
    foot.appendChild(score);
    var actions = el("div", "actions");
    actions.appendChild(voteButton(movie, "liked"));
    actions.appendChild(voteButton(movie, "disliked"));
    foot.appendChild(actions);
    body.appendChild(foot);

    card.appendChild(body);
    return card;
  }

  function renderSkeleton() {
    els.grid.textContent = "";
    for (var i = 0; i < 8; i++) {
      var card = el("div", "card skeleton");
      card.setAttribute("aria-hidden", "true");
      card.appendChild(el("div", "poster"));
      var body = el("div", "card-body");
      body.appendChild(el("div", "sk-line sk-wide"));
      body.appendChild(el("div", "sk-line"));
      body.appendChild(el("div", "sk-line sk-short"));
      card.appendChild(body);
      els.grid.appendChild(card);
    }
  }

  function renderGrid(recs) {
    els.grid.textContent = "";
    var movies = (recs && recs.movies) || [];
    if (!recs) {
      els.grid.appendChild(el("p", "muted grid-empty", "Your recommendations will appear here."));
      return;
    }
    if (!movies.length) {
      els.grid.appendChild(el("p", "muted grid-empty", "No movies match yet — try describing it differently."));
      return;
    }
    movies.forEach(function (m, i) { els.grid.appendChild(renderCard(m, i)); });
  }

  function renderSuggestions(recs) {
    els.suggestions.textContent = "";
    var items = (recs && recs.suggestions) || [];
    els.suggestionsWrap.hidden = items.length === 0;
    items.forEach(function (s) {
      var chip = el("span", "chip");
      chip.setAttribute("data-suggestion-id", String(s.id));
      var label = s.label || (s.words || []).join(" · ");
      var accept = el("button", "chip-accept", "+ " + label);
      accept.type = "button";
      accept.setAttribute("aria-label", "refine: " + label);
      accept.disabled = state.busy;
      accept.addEventListener("click", function () { suggest(s, "accepted"); });
      var reject = el("button", "chip-reject", "×");
      reject.type = "button";
      reject.setAttribute("aria-label", "not this: " + label);
      reject.title = "Not this";
      reject.disabled = state.busy;
      reject.addEventListener("click", function (ev) { ev.stopPropagation(); suggest(s, "rejected"); });
      chip.appendChild(accept);
      chip.appendChild(reject);
      els.suggestions.appendChild(chip);
    });
  }

  function renderAttended(recs) {
    els.attended.textContent = "";
    var items = (recs && recs.attended) || [];
    els.attendedEmpty.hidden = items.length > 0;
    var max = 0;
    items.forEach(function (a) { if (a.weight > max) max = a.weight; });
    items.forEach(function (a) {
      var li = el("li", "att att-" + (a.kind || "other"));
      var head = el("div", "att-head");
      head.appendChild(el("span", "att-kind", a.kind));
      var label = el("span", "att-label", a.label);
      label.title = a.label;
      head.appendChild(label);
      var pct = el("span", "att-weight", (a.weight * 100).toFixed(a.weight < 0.1 ? 1 : 0) + "%");
      head.appendChild(pct);
      li.appendChild(head);
      var bar = el("div", "att-bar");
      var fill = el("div", "att-fill");
      fill.style.width = (max > 0 ? Math.max(2, (a.weight / max) * 100) : 0) + "%";
      bar.appendChild(fill);
      bar.setAttribute("role", "meter");
      bar.setAttribute("aria-valuemin", "0");
      bar.setAttribute("aria-valuemax", "1");
      bar.setAttribute("aria-valuenow", String(a.weight));
      bar.setAttribute("aria-label", "attention on " + a.label);
      li.appendChild(bar);
      els.attended.appendChild(li);
    });
    renderModalities(recs);
  }

  // the modality gate's mean weight per modality over the shown movies (absent without model.modality_gate)
  function renderModalities(recs) {
    if (!els.modalities) return;
    els.modalities.textContent = "";
    var w = (recs && recs.modality_weights) || null;
    var names = w ? Object.keys(w).sort(function (a, b) { return w[b] - w[a]; }) : [];
    els.modalitiesWrap.hidden = names.length === 0;
    names.forEach(function (name) {
      var li = el("li", "att att-modality");
      var head = el("div", "att-head");
      head.appendChild(el("span", "att-label", name));
      head.appendChild(el("span", "att-weight", (w[name] * 100).toFixed(0) + "%"));
      li.appendChild(head);
      var bar = el("div", "att-bar");
      var fill = el("div", "att-fill");
      fill.style.width = Math.max(2, w[name] * 100) + "%";
      bar.appendChild(fill);
      bar.setAttribute("role", "meter");
      bar.setAttribute("aria-valuemin", "0");
      bar.setAttribute("aria-valuemax", "1");
      bar.setAttribute("aria-valuenow", String(w[name]));
      bar.setAttribute("aria-label", "weight of the " + name + " modality");
      li.appendChild(bar);
      els.modalities.appendChild(li);
    });
  }

  // fromServer: a fresh answer (counted in the grid's data-renders, which tests and tools can wait on).
  function renderRecs(recs, fromServer) {
    state.recs = recs || null;
    if (fromServer) {
      state.renders += 1;
      els.grid.setAttribute("data-renders", String(state.renders));
    }
    renderGrid(state.recs);
    renderSuggestions(state.recs);
    renderAttended(state.recs);
    renderUnderstood(state.recs);
    els.status.textContent = statusText();
    document.body.setAttribute("data-round", state.recs ? String(state.recs.round || 0) : "");
  }

  // What the request was understood to say: "Understood: like Inception · 1950s · not romance".
  function renderUnderstood(recs) {
    if (!els.understood) return;
    var summary = recs && recs.understood && recs.understood.summary;
    els.understood.textContent = summary ? "Understood: " + summary : "";
    els.understood.hidden = !summary;
  }

  // The system's answer in words, as its chat bubble.
  function addReply(recs) {
    if (recs && recs.reply) addMessage(recs.reply, Date.now() / 1000, "system");
  }

  function noteResolved(recs) {
    var resolved = recs && recs.resolved;
    if (!resolved) return;
    var titles = Object.keys(resolved);
    if (titles.length) addNote("Recognised: " + titles.join(", "));
  }

  /* ---------- session flow ---------- */

  function createSession() {
    return api("POST", "sessions").then(function (data) {
      state.sessionId = data.id;
      storageSet(data.id);
      return data.id;
    });
  }

  function ensureSession() {
    return state.sessionId ? Promise.resolve(state.sessionId) : createSession();
  }

  function asRecommendations(data) {
    if (data && data.recommendations !== undefined && !Array.isArray(data.movies)) return data.recommendations;
    return data;
  }

  function postMessage(text) {
    return ensureSession().then(function (id) {
      return api("POST", "sessions/" + encodeURIComponent(id) + "/messages", { text: text, k: K });
    }).catch(function (err) {
      // The session is gone on the server (restart, expiry): start a fresh one, once.
      if (err instanceof ApiError && err.status === 404 && state.sessionId) {
        state.sessionId = null;
        storageSet(null);
        return createSession().then(function (id) {
          return api("POST", "sessions/" + encodeURIComponent(id) + "/messages", { text: text, k: K });
        });
      }
      throw err;
    });
  }

  function sendMessage() {
    var text = els.input.value.trim();
    if (!text || state.busy) return;
    clearError();
    var bubble = addMessage(text, Date.now() / 1000);
    els.input.value = "";
    autosize();
    setBusy(true, "Finding movies…");
    postMessage(text).then(function (data) {
      var recs = asRecommendations(data);
      setBusy(false);
      renderRecs(recs, true);
      noteResolved(recs);
      addReply(recs);
    }, function (err) {
      setBusy(false);
      // Not stored by the server: take the bubble back and give the text back for another try.
      if (bubble.parentNode) bubble.parentNode.removeChild(bubble);
      if (!els.messages.children.length) els.emptyHint.hidden = false;
      if (!els.input.value) { els.input.value = text; autosize(); }
      renderRecs(state.recs);
      showError(err && err.message ? err.message : String(err));
    });
  }

  function sendFeedback(body, label) {
    if (!state.sessionId || state.busy) return Promise.resolve();
    clearError();
    body.k = K;
    setBusy(true, label);
    return api("POST", "sessions/" + encodeURIComponent(state.sessionId) + "/feedback", body).then(function (data) {
      setBusy(false);
      var recs = asRecommendations(data);
      renderRecs(recs, true);
      addReply(recs);
    }, function (err) {
      setBusy(false);
      renderRecs(state.recs);
      if (err instanceof ApiError && err.status === 404 && /session/i.test(err.message)) {
        showError("This conversation has expired on the server. Start a new one.");
      } else {
        showError(err && err.message ? err.message : String(err));
      }
      throw err;
    });
  }

  function vote(movie, value) {
    if (state.busy) return;
    var previous = state.votes[movie.id];
    state.votes[movie.id] = value;
    var card = els.grid.querySelector('[data-movie-id="' + String(Number(movie.id)) + '"]');
    if (card) {
      card.classList.remove("is-liked", "is-disliked");
      card.classList.add("is-" + value);
      var badge = card.querySelector(".vote-badge");
      if (badge) badge.textContent = value === "liked" ? "Liked" : "Not for me";
      var btns = card.querySelectorAll(".vote");
      for (var i = 0; i < btns.length; i++) {
        var pressed = btns[i].classList.contains(value === "liked" ? "like" : "dislike");
        btns[i].setAttribute("aria-pressed", pressed ? "true" : "false");
      }
    }
    sendFeedback({ movie_id: movie.id, value: value },
      value === "liked" ? "More like “" + movie.title + "”…" : "Dropping “" + movie.title + "”…")
      .catch(function () {
        if (previous) state.votes[movie.id] = previous; else delete state.votes[movie.id];
        renderGrid(state.recs);
      });
  }

  function suggest(s, value) {
    if (state.busy) return;
    var chip = els.suggestions.querySelector('[data-suggestion-id="' + String(Number(s.id)) + '"]');
    if (chip) chip.classList.add(value === "accepted" ? "is-accepted" : "is-rejected");
    sendFeedback({ suggestion_id: s.id, value: value }, value === "accepted" ? "Refining…" : "Updating…")
      .catch(function () { /* shown inline */ });
  }

  function resetConversation() {
    state.sessionId = null;
    state.votes = {};
    storageSet(null);
    clearError();
    clearMessages();
    renderRecs(null);
    els.input.value = "";
    autosize();
    els.input.focus();
  }

  function restore() {
    var id = storageGet();
    if (!id) { renderRecs(null); return; }
    setBusy(true, "Resuming…");
    api("GET", "sessions/" + encodeURIComponent(id)).then(function (s) {
      state.sessionId = s.id || id;
      (s.messages || []).forEach(function (m) {
        if (m.role === "user" || m.role === "system") addMessage(m.text, m.at, m.role);
      });
      (s.feedback || []).forEach(function (f) {
        var match = /^movie:(\d+)$/.exec(f.target || "");
        if (match && (f.value === "liked" || f.value === "disliked")) state.votes[Number(match[1])] = f.value;
      });
      setBusy(false);
      renderRecs(s.recommendations || null, true);
    }, function (err) {
      setBusy(false);
      storageSet(null);
      state.sessionId = null;
      renderRecs(null);
      if (!(err instanceof ApiError && err.status === 404)) showError(err.message);
    });
  }

  /* ---------- composer ---------- */

  function autosize() {
    els.input.style.height = "auto";
    els.input.style.height = Math.min(els.input.scrollHeight + 2, 200) + "px";
  }

  els.composer.addEventListener("submit", function (ev) {
    ev.preventDefault();
    sendMessage();
  });
  els.input.addEventListener("keydown", function (ev) {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      sendMessage();
    }
  });
  els.input.addEventListener("input", autosize);
  els.newConversation.addEventListener("click", resetConversation);

  restore();
})();
