// The pages' one script (the buyer's and the operator console's). Every
// page works without it (forms, <noscript> refresh); this adds: a
// keyboard-operable seat grid, holds sent at once with optimistic greying
// and rollback, the live seat map (WebSocket, protocol v1 of docs/api.md,
// else polling) for buyers and for the console's occupancy, hold
// countdowns and extension, and a waiting room that updates without
// reloading.
(function () {
  "use strict";

  var csrfMeta = document.querySelector('meta[name="csrf-token"]');
  var csrf = csrfMeta ? csrfMeta.getAttribute("content") : "";
  var statusBox = document.getElementById("status");

  // Messages for screen readers and everyone else (an aria-live region).
  function announce(text, isError) {
    if (!statusBox) return;
    statusBox.textContent = "";
    var p = document.createElement("p");
    p.textContent = text;
    if (isError) p.className = "error";
    statusBox.appendChild(p);
  }

  // The JSON API through the edge: the session cookie authenticates,
  // the CSRF header proves the request comes from our page.
  function api(method, url, body, extra) {
    var headers = { Accept: "application/json", "X-CSRF-Token": csrf };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    for (var k in extra || {}) headers[k] = extra[k];
    return fetch(url, {
      method: method,
      headers: headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    }).then(function (r) {
      return r.text().then(function (t) {
        var json = null;
        try { json = t ? JSON.parse(t) : null; } catch (e) { json = null; }
        return { status: r.status, json: json, headers: r.headers };
      });
    });
  }

  function errorOf(res) {
    var e = res.json && res.json.error;
    return { code: e ? e.code : "unknown", message: e ? e.message : "", details: e ? e.details : null };
  }

  function clock(secs) {
    secs = Math.max(0, Math.floor(secs));
    var h = Math.floor(secs / 3600), m = Math.floor(secs / 60) % 60, s = secs % 60;
    var mm = h && m < 10 ? "0" + m : String(m);
    return (h ? h + ":" : "") + mm + ":" + (s < 10 ? "0" : "") + s;
  }

  function roughly(secs) {
    if (secs < 60) return Math.max(0, Math.round(secs)) + " seconds";
    var m = Math.round(secs / 60);
    if (m < 60) return m + (m === 1 ? " minute" : " minutes");
    var h = Math.floor(m / 60), r = m % 60;
    return h + (h === 1 ? " hour" : " hours") + (r ? " " + r + " minutes" : "");
  }

  // A countdown to an instant, updated every second; `done` when it ends.
  function countdown(el, until, done) {
    var timer = setInterval(tick, 1000);
    function tick() {
      var left = (until - Date.now()) / 1000;
      el.textContent = left > 0 ? clock(left) : "0:00";
      if (left <= 0) {
        clearInterval(timer);
        if (done) done();
      }
    }
    tick();
    return function () { clearInterval(timer); };
  }

  // ------------------------------------------------ live seat states
  // The live seat map, shared by the buyer's seat map and the console's:
  // protocol v1 of docs/api.md over the edge's socket (a snapshot, then
  // deltas; a gap or close code 4000 resynchronises), else polling
  // `/seats?since=N`. `set(ord, state)` gets each seat's state as it
  // becomes known ("available", "held" or "sold"; ord is the seat's place
  // in the map), `changed()` runs after each frame, and `notice` says
  // when updates are delayed.
  function liveSeats(base, count, set, changed, notice) {
    var STATES = ["available", "held", "sold"];
    var seq = null, ws = null, failures = 0, polling = false;

    function degraded(on) {
      if (!notice) return;
      notice.hidden = !on;
      notice.textContent = on ? "Live updates are delayed right now; the map refreshes every few seconds." : "";
    }

    function word(status) {
      return status === "AVAILABLE" ? "available" : status === "HELD" ? "held" : "sold";
    }

    function applyMap(b64, n) {
      var bin = atob(b64);
      for (var ord = 0; ord < n && ord < count; ord++) {
        var byte = bin.charCodeAt(ord >> 2);
        set(ord, STATES[Math.min((byte >> (6 - 2 * (ord & 3))) & 3, 2)]);
      }
    }

    // One frame; false when it shows a gap (then resynchronise).
    function frame(m) {
      if (!m) return true;
      if (Array.isArray(m.seats)) {
        // A plain seat map (no sequence numbers): take it whole.
        m.seats.forEach(function (s, ord) { set(ord, word(s.status)); });
        changed();
        return true;
      }
      if (m.v !== 1) return false;
      if (m.type === "snapshot") {
        seq = m.seq;
        applyMap(m.map, m.seats);
        degraded(!!m.degraded);
      } else if (m.type === "delta") {
        if (seq === null || m.from > seq + 1) return false;
        if (m.to <= seq) return true;
        m.changes.forEach(function (c) { set(c[0], word(c[1])); });
        seq = m.to;
      }
      changed();
      return true;
    }

    function connect() {
      if (!("WebSocket" in window)) return poll();
      var opened = false;
      try {
        ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + base + "/live");
      } catch (e) {
        return poll();
      }
      ws.onopen = function () { opened = true; failures = 0; };
      ws.onmessage = function (e) {
        var m = null;
        try { m = JSON.parse(e.data); } catch (x) { m = null; }
        if (!frame(m)) { seq = null; ws.close(4000, "resync"); }
      };
      ws.onclose = function (e) {
        ws = null;
        if (e.code === 4000) { seq = null; return setTimeout(connect, 100); }
        failures++;
        if (!opened || failures >= 3) return poll();
        setTimeout(connect, Math.min(10000, 500 * Math.pow(2, failures)));
      };
    }

    function poll() {
      if (polling) return;
      polling = true;
      (function again() {
        // since=0 before any snapshot: the protocol's endpoint answers with
        // a snapshot, and a plain seat map route ignores the query.
        var url = base + "/seats?since=" + (seq === null ? 0 : seq);
        var extra = seq === null ? {} : { "If-None-Match": '"' + seq + '"' };
        api("GET", url, undefined, extra).then(function (res) {
          if (res.status === 200 && !frame(res.json)) seq = null;
        }).catch(function () {}).then(function () {
          setTimeout(again, document.hidden ? 10000 : 2000);
        });
      })();
    }

    connect();
  }

  // ------------------------------------------------------- seat map
  var form = document.getElementById("seat-form");
  if (form) seatMap(form);

  function seatMap(form) {
    var city = form.getAttribute("data-city");
    var show = form.getAttribute("data-show");
    var base = "/v1/c/" + city + "/shows/" + show;
    var grid = document.getElementById("seat-grid");
    var boxes = Array.prototype.slice.call(grid.querySelectorAll("input[type=checkbox]"));
    var byOrd = [], byLabel = {};
    var mine = {}; // seats in the user's current hold
    var pending = {}; // seats being held right now
    var hold = null, stopCountdown = null;

    // The APG grid pattern: one tab stop, arrow keys move, Enter and
    // Space toggle. Taken seats stay focusable (aria-disabled) so a
    // screen reader user can hear that they are taken.
    grid.setAttribute("role", "grid");
    var rows = Array.prototype.slice.call(grid.querySelectorAll("tr")).map(function (tr) {
      tr.setAttribute("role", "row");
      var th = tr.querySelector("th");
      if (th) th.setAttribute("role", "rowheader");
      Array.prototype.forEach.call(tr.querySelectorAll("td"), function (td) { td.setAttribute("role", "gridcell"); });
      return Array.prototype.slice.call(tr.querySelectorAll("input[type=checkbox]"));
    });
    boxes.forEach(function (b) {
      var ord = Number(b.getAttribute("data-ord"));
      byOrd[ord] = b;
      byLabel[b.value] = b;
      b.setAttribute("data-state", b.disabled ? stateOfClass(b) : "available");
      if (b.disabled) {
        b.disabled = false;
        b.setAttribute("aria-disabled", "true");
      }
      b.tabIndex = -1;
    });
    var first = boxes.filter(function (b) { return !b.hasAttribute("aria-disabled"); })[0] || boxes[0];
    if (first) first.tabIndex = 0;

    function stateOfClass(b) {
      var l = b.nextElementSibling;
      return l && l.classList.contains("sold") ? "sold" : "held";
    }

    function position(b) {
      for (var r = 0; r < rows.length; r++) {
        var c = rows[r].indexOf(b);
        if (c >= 0) return [r, c];
      }
      return [0, 0];
    }

    function focusBox(b) {
      if (!b) return;
      boxes.forEach(function (x) { x.tabIndex = -1; });
      b.tabIndex = 0;
      b.focus();
    }

    grid.addEventListener("keydown", function (e) {
      var b = e.target;
      if (!b || b.type !== "checkbox") return;
      var p = position(b), r = p[0], c = p[1], next = null;
      switch (e.key) {
        case "ArrowRight": next = rows[r][c + 1]; break;
        case "ArrowLeft": next = rows[r][c - 1]; break;
        case "ArrowDown": if (rows[r + 1]) next = rows[r + 1][Math.min(c, rows[r + 1].length - 1)]; break;
        case "ArrowUp": if (rows[r - 1]) next = rows[r - 1][Math.min(c, rows[r - 1].length - 1)]; break;
        case "Home": next = rows[r][0]; break;
        case "End": next = rows[r][rows[r].length - 1]; break;
        case "Enter": e.preventDefault(); b.click(); return;
        default: return;
      }
      e.preventDefault();
      focusBox(next);
    });
    grid.addEventListener("click", function (e) {
      var b = e.target;
      if (b && b.type === "checkbox") {
        focusBox(b);
        if (b.getAttribute("aria-disabled") === "true") {
          e.preventDefault();
          announce("Seat " + b.value + " is not available.");
        }
      }
    });

    // Shows a seat's state: class (symbol and pattern), accessible name,
    // whether it can be chosen.
    function paint(b, state) {
      var label = b.nextElementSibling;
      var yours = mine[b.value], busy = pending[b.value];
      var shown = yours ? "held by you" : busy ? "being held for you" : state;
      b.setAttribute("data-state", state);
      label.className = "seat " + (yours || busy ? "held mine" : state);
      var name = b.getAttribute("aria-label").replace(/, [^,]+$/, ", " + shown);
      b.setAttribute("aria-label", name);
      if ((state === "available" && !busy) || yours) {
        b.removeAttribute("aria-disabled");
      } else {
        b.setAttribute("aria-disabled", "true");
        if (b.checked && !yours && !busy) {
          b.checked = false;
          announce("Seat " + b.value + " was just taken by someone else.", true);
        }
      }
    }

    function setState(ord, state) {
      var b = byOrd[ord];
      if (b) paint(b, state);
    }

    function counts() {
      var free = 0;
      boxes.forEach(function (b) { if (b.getAttribute("data-state") === "available") free++; });
      var el = document.getElementById("counts");
      if (el) el.textContent = free + " of " + boxes.length + " seats free.";
    }

    // ----- holding
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var seats = boxes.filter(function (b) { return b.checked && b.getAttribute("aria-disabled") !== "true"; })
        .map(function (b) { return b.value; });
      if (!seats.length) { announce("Choose at least one seat first.", true); return; }
      var release = hold ? api("DELETE", "/v1/c/" + city + "/holds/" + hold.hold_id) : Promise.resolve();
      // Optimistic: the chosen seats look taken at once.
      seats.forEach(function (l) { pending[l] = true; paint(byLabel[l], "held"); });
      announce("Holding " + seats.join(", ") + "…");
      release.then(function () {
        if (hold) { mine = {}; hold = null; }
        return api("POST", base + "/holds", { seats: seats });
      }).then(function (res) {
        pending = {};
        if (res.status === 201) return held(res.json);
        rollback(seats, res);
      }).catch(function () {
        pending = {};
        rollback(seats, { status: 0, json: null });
      });
    });

    function rollback(seats, res) {
      var err = errorOf(res), taken = {};
      (err.details || []).forEach(function (l) { taken[l] = true; });
      seats.forEach(function (l) {
        var b = byLabel[l];
        b.checked = false;
        paint(b, taken[l] ? "held" : "available");
      });
      counts();
      if (res.status === 401) { location.href = "/signin"; return; }
      var msg;
      if (err.code === "seats_unavailable") {
        var list = Object.keys(taken);
        msg = list.length
          ? "Sorry, " + (list.length === 1 ? "seat " + list[0] + " was" : "seats " + list.join(", ") + " were") +
            " just taken by someone else. Nothing is held: choose other seats."
          : "Sorry, some of those seats were just taken. Nothing is held: choose again.";
      } else if (err.code === "pass_required" || /^pass_/.test(err.code)) {
        msg = "This show is sold through a queue: join the queue first.";
      } else if (res.status === 0) {
        msg = "Your seats could not be held: the connection failed. Try again.";
      } else {
        msg = (err.message || "Your seats could not be held.") + " Nothing is held.";
      }
      announce(msg, true);
    }

    var panel = document.getElementById("hold-panel");
    function held(h) {
      hold = h;
      mine = {};
      h.seats.forEach(function (l) { mine[l] = true; });
      boxes.forEach(function (b) { b.checked = !!mine[b.value]; paint(b, mine[b.value] ? "held" : b.getAttribute("data-state")); });
      counts();
      document.getElementById("hold-seats").textContent = "Seats " + h.seats.join(", ") + " are yours until the timer runs out.";
      var link = document.getElementById("hold-continue");
      link.href = "/c/" + city + "/holds/" + h.hold_id + "/checkout";
      document.getElementById("hold-extend").disabled = !!h.extended;
      panel.hidden = false;
      startCountdown();
      announce("Seats " + h.seats.join(", ") + " are held for you.");
    }

    function startCountdown() {
      if (stopCountdown) stopCountdown();
      stopCountdown = countdown(document.getElementById("hold-countdown"), Date.parse(hold.expires_at), function () {
        announce("Your hold has expired: the seats are free again.", true);
        panel.hidden = true;
        mine = {};
        hold = null;
      });
    }

    document.getElementById("hold-extend").addEventListener("click", function () {
      if (!hold) return;
      var btn = this;
      btn.disabled = true;
      api("POST", "/v1/c/" + city + "/holds/" + hold.hold_id + "/extend").then(function (res) {
        if (res.status === 200) {
          hold = res.json;
          startCountdown();
          announce("Your hold was extended.");
        } else {
          announce(errorOf(res).message || "The hold could not be extended.", true);
        }
      });
    });

    // ----- live updates
    counts();
    liveSeats(base, byOrd.length, setState, counts, document.getElementById("live-notice"));
  }

  // --------------------------------------------------- checkout page
  Array.prototype.forEach.call(document.querySelectorAll(".countdown[data-expires]"), function (el) {
    countdown(el, Date.parse(el.getAttribute("data-expires")), function () {
      announce("Your hold has expired: the seats are free again.", true);
    });
  });
  Array.prototype.forEach.call(document.querySelectorAll("form.pay"), function (f) {
    // The page's idempotency key already makes a second click harmless;
    // this only says that the first one is being dealt with.
    f.addEventListener("submit", function () {
      var b = f.querySelector("button[type=submit]");
      setTimeout(function () { b.disabled = true; b.textContent = "Paying…"; }, 0);
    });
  });

  // ---------------------------------------------------- waiting room
  var sale = document.getElementById("sale");
  if (sale && sale.getAttribute("data-state") !== "signed_out") waitingRoom(sale);

  function waitingRoom(el) {
    var url = el.getAttribute("data-status-url");
    var state = el.getAttribute("data-state");
    var key = "ahead0:" + url;
    var opens = document.getElementById("sale-countdown");
    if (opens) {
      countdown(opens, Date.parse(opens.getAttribute("data-opens-at")), function () { setTimeout(check, 500); });
    }
    function set(id, text) {
      var e = document.getElementById(id);
      if (e) e.textContent = text;
    }
    function show(s) {
      // Another state means other choices on the page: let the server
      // render them (an admitted user is sent on to the seat map).
      if (s.state !== state) { location.reload(); return; }
      if (s.state === "waiting") {
        set("sale-position", s.position);
        set("sale-ahead", s.ahead);
        set("sale-eta", "between " + roughly(s.wait_min_s) + " and " + roughly(s.wait_max_s));
        var first = Number(sessionStorage.getItem(key) || 0);
        if (!first || s.ahead > first) { first = s.ahead; sessionStorage.setItem(key, String(first)); }
        var bar = document.getElementById("sale-progress");
        if (bar && first > 0) bar.value = Math.round(100 * (first - s.ahead) / first);
      }
    }
    function check() {
      api("GET", url).then(function (res) {
        if (res.status === 200) show(res.json);
        var wait = Number(res.headers.get("Retry-After")) || Number(el.getAttribute("data-refresh")) || 5;
        if (state === "pre_queue" || state === "waiting" || state === "ready") setTimeout(check, wait * 1000);
      }).catch(function () { setTimeout(check, 5000); });
    }
    var every = Number(el.getAttribute("data-refresh"));
    if (every > 0) setTimeout(check, every * 1000);
  }

  // ------------------------------------------ console: live occupancy
  // The console's show page: the read-only map and the counts by
  // category follow the live seat map. Without script they stay the
  // snapshot the page was rendered with.
  var opsMap = document.getElementById("ops-seat-map");
  if (opsMap) liveOccupancy(opsMap);

  function liveOccupancy(table) {
    var cells = [];
    Array.prototype.forEach.call(table.querySelectorAll(".seat[data-ord]"), function (c) {
      cells[Number(c.getAttribute("data-ord"))] = c;
    });
    var asOf = document.getElementById("occupancy-as-of");
    var rows = document.querySelectorAll("#occupancy tr[data-cat]");

    function set(ord, state) {
      var c = cells[ord];
      if (!c || c.getAttribute("data-state") === state) return;
      c.setAttribute("data-state", state);
      c.className = "seat " + state;
      c.setAttribute("aria-label", c.getAttribute("aria-label").replace(/, [^,]+$/, ", " + state));
    }

    // Free, held and sold by category (and all), from the map.
    function changed() {
      var n = {};
      cells.forEach(function (c) {
        var s = c.getAttribute("data-state");
        [c.getAttribute("data-cat"), ""].forEach(function (k) {
          n[k] = n[k] || { available: 0, held: 0, sold: 0 };
          n[k][s]++;
        });
      });
      Array.prototype.forEach.call(rows, function (tr) {
        var k = n[tr.getAttribute("data-cat")], td = tr.querySelectorAll("td");
        if (!k || td.length < 4) return;
        td[1].textContent = k.available;
        td[2].textContent = k.held;
        td[3].textContent = k.sold;
      });
      if (asOf) asOf.textContent = "Live: the counts and the map follow every hold and sale; last updated " +
        new Date().toLocaleTimeString() + ".";
    }

    liveSeats(table.getAttribute("data-live"), cells.length, set, changed, document.getElementById("live-notice"));
  }

  // A refused form's error summary takes focus, so it is read first; its
  // links take focus to their field (a fragment alone only scrolls).
  var summary = document.querySelector(".error-summary");
  if (summary) {
    summary.focus();
    summary.addEventListener("click", function (e) {
      var href = e.target.getAttribute && e.target.getAttribute("href");
      var field = href && href.charAt(0) === "#" ? document.getElementById(href.slice(1)) : null;
      if (!field) return;
      e.preventDefault();
      field.focus();
      field.scrollIntoView({ block: "center" });
    });
  }
})();
