// Live state on the Cluster, IP ALIAS and Cluster nodes pages.
//
// The server pushes server-sent events (cluster/hub.py, event_stream):
// "status" carries the whole status (the body of GET /api/v1/status/),
// "transition" one engine transition (as soon as the server hears it: its
// node's cell shows it before the status confirms it) and "cluster_event" one cluster event a
// notifier stored (as GET /api/v1/events/ shows it). Every text shown comes from the server
// (summaries, alert messages); this file only puts values where the page's
// data- attributes say. The page is complete without it: it is rendered with
// the same status.
"use strict";

(function () {
  var indicator = document.getElementById("live-indicator");
  if (!indicator || !window.EventSource) {
    return;
  }
  var url = indicator.getAttribute("data-events-url");
  var labelsNode = document.getElementById("reason-labels");
  var reasonLabels = labelsNode ? JSON.parse(labelsNode.textContent) : {};
  var timelinesNode = document.getElementById("cluster-timelines");
  var maxEntries = Number(timelinesNode && timelinesNode.getAttribute("data-max-entries")) || 50;
  var eventPanel = document.getElementById("cluster-event-list");
  var kindsNode = document.getElementById("event-kinds");
  var eventKinds = kindsNode ? JSON.parse(kindsNode.textContent) : {};
  var maxEvents = Number(eventPanel && eventPanel.getAttribute("data-max-events")) || 20;
  var source = null;
  var retryTimer = null;

  function setIndicator(state, text) {
    indicator.setAttribute("data-live", state);
    indicator.textContent = text;
  }

  function setText(element, text) {
    if (element && element.textContent !== text) {
      element.textContent = text;
    }
  }

  function owners(cell, names, fallback) {
    cell.textContent = "";
    if (names.length) {
      var strong = document.createElement("strong");
      strong.textContent = names.join(", ");
      cell.appendChild(strong);
    } else {
      var none = document.createElement("span");
      none.className = "muted";
      none.textContent = fallback;
      cell.appendChild(none);
    }
  }

  // The page was rendered for a set of aliases and nodes; when the status
  // speaks of others (one was added or deleted), only a reload draws them.
  function sameShape(status) {
    var rows = document.querySelectorAll("#cluster-matrix tr[data-alias-id]");
    if (!rows.length && !document.getElementById("cluster-matrix")) {
      return true;
    }
    var ids = Array.prototype.map.call(rows, function (row) {
      return row.getAttribute("data-alias-id");
    });
    var heads = document.querySelectorAll("#cluster-matrix th[data-node]");
    var names = Array.prototype.map.call(heads, function (th) {
      return th.getAttribute("data-node");
    });
    return (
      ids.join(",") === status.aliases.map(function (a) { return String(a.id); }).join(",") &&
      names.join(",") === status.nodes.map(function (n) { return n.name; }).join(",")
    );
  }

  // A node's column head and card: reporting or not, maintenance, and each
  // demotion source (its reason, as the node wrote it).
  function showNodeHead(node) {
    var flag = function (value) { return value ? "true" : "false"; };
    document.querySelectorAll('.node-head[data-node="' + node.name + '"], ' +
        '.node-card[data-node="' + node.name + '"]').forEach(function (el) {
      el.setAttribute("data-reporting", flag(node.reporting));
      el.setAttribute("data-maintenance", flag(node.maintenance));
    });
    var head = document.querySelector('.node-head[data-node="' + node.name + '"]');
    if (!head) {
      return;
    }
    if (head.title !== node.summary) {
      head.title = node.summary;
    }
    setText(head.querySelector("[data-node-live]"), node.reporting ? "reporting" : "not reporting");
    var maintenance = head.querySelector("[data-node-maintenance]");
    if (maintenance) {
      maintenance.hidden = !node.maintenance;
    }
    var demotion = head.querySelector("[data-node-demotion]");
    var sources = (node.demotion && node.demotion.sources) || [];
    var total = (node.demotion && node.demotion.total) || 0;
    if (!demotion) {
      return;
    }
    var words = ["demoted " + total].concat(sources.map(function (s) {
      return s.reason || s.source;
    }));
    if (demotion.getAttribute("data-words") === words.join("\n")) {
      return;
    }
    demotion.setAttribute("data-words", words.join("\n"));
    demotion.hidden = !total;
    demotion.textContent = "";
    words.forEach(function (word, index) {
      var span = document.createElement("span");
      span.className = index ? "demotion-source" : "demotion-total";
      span.textContent = word;
      if (index) {
        span.title = sources[index - 1].source + ": " + sources[index - 1].level;
      }
      demotion.appendChild(span);
    });
  }

  function showStatus(status) {
    if (!sameShape(status)) {
      window.location.reload();
      return;
    }
    var unavailable = document.getElementById("live-unavailable");
    if (unavailable) {
      unavailable.hidden = status.available;
    }
    status.nodes.forEach(function (node) {
      document.querySelectorAll('[data-node-summary="' + node.name + '"]').forEach(function (el) {
        setText(el, node.summary);
        el.setAttribute("data-reporting", node.reporting ? "true" : "false");
      });
      showNodeHead(node);
    });
    status.aliases.forEach(function (alias) {
      var summary = document.querySelector('[data-alias-summary="' + alias.id + '"]');
      if (summary) {
        setText(summary, alias.summary);
        summary.setAttribute("data-mismatch", alias.mismatch ? "true" : "false");
      }
      var row = document.querySelector('#cluster-matrix tr[data-alias-id="' + alias.id + '"]');
      if (!row) {
        return;
      }
      row.setAttribute("data-mismatch", alias.mismatch ? "true" : "false");
      alias.cells.forEach(function (cell) {
        var td = row.querySelector('td[data-node="' + cell.node + '"]');
        if (!td) {
          return;
        }
        td.setAttribute("data-state", cell.state);
        td.setAttribute("data-stale", cell.stale ? "true" : "false");
        var label = td.querySelector(".state");
        setText(label, cell.stale ? "stale MASTER" : cell.detail || cell.state);
        if (cell.last_reason) {
          label.title = "last change: " + cell.last_reason +
            (cell.last_source ? " (" + cell.last_source + ")" : "");
        }
      });
      owners(row.querySelector('[data-role="expected-owner"]'),
        alias.expected_owner ? [alias.expected_owner] : [], "none");
      owners(row.querySelector('[data-role="actual-owner"]'), alias.masters,
        status.available ? "none" : "unknown");
      row.setAttribute("data-alert", alias.alert || "");
      var alertCell = row.querySelector('[data-role="alert"]');
      if (alertCell && alertCell.textContent !== (alias.alert_text || "")) {
        alertCell.textContent = "";
        if (alias.alert_text) {
          var text = document.createElement("span");
          text.className = "row-alert-text";
          text.textContent = alias.alert_text;
          alertCell.appendChild(text);
        }
      }
    });
    var alerts = document.getElementById("cluster-alerts");
    if (alerts) {
      alerts.textContent = "";
      status.alerts.forEach(function (alert) {
        var li = document.createElement("li");
        li.className = "alert alert-" + alert.kind;
        li.setAttribute("data-alert", alert.kind);
        li.textContent = alert.message;
        alerts.appendChild(li);
      });
    }
  }

  function pad(n) {
    return (n < 10 ? "0" : "") + n;
  }

  // Each transition comes as the server hears it, then again with the status
  // computed after it (cluster/hub.py, event_stream): shown once. The keys are
  // kept for as many transitions as a status's trigger holds (hub.TRIGGER_LIMIT).
  var seenTransitions = new Set();
  var seenOrder = [];
  var maxSeen = 500;

  function firstSighting(message) {
    var key = [message.node, message.vhid, message.interface, message.at].join("|");
    if (seenTransitions.has(key)) {
      return false;
    }
    seenTransitions.add(key);
    seenOrder.push(key);
    while (seenOrder.length > maxSeen) {
      seenTransitions.delete(seenOrder.shift());
    }
    return true;
  }

  // The node's cell for that VIP takes the new state at once; the owner
  // columns, the alerts and the cell's details wait for the status that follows,
  // which writes every cell again.
  function showTransitionCell(message) {
    var state = String(message.to).toUpperCase();
    var cells = document.querySelectorAll('#cluster-matrix td.cell[data-node="' + message.node +
      '"][data-vhid="' + message.vhid + '"]');
    Array.prototype.forEach.call(cells, function (td) {
      if (message.interface && td.getAttribute("data-interface") !== message.interface) {
        return;
      }
      td.setAttribute("data-state", state);
      td.setAttribute("data-stale", "false");
      setText(td.querySelector(".state"), state);
    });
  }

  function showTransition(message) {
    if (!firstSighting(message)) {
      return;
    }
    showTransitionCell(message);
    var sections = document.querySelectorAll('.timeline[data-vhid="' + message.vhid + '"]');
    Array.prototype.forEach.call(sections, function (section) {
      var iface = section.getAttribute("data-interface");
      if (message.interface && iface !== message.interface) {
        return;
      }
      var list = section.querySelector(".timeline-entries");
      var empty = list.querySelector(".empty-note");
      if (empty) {
        empty.remove();
      }
      var at = new Date(message.at * 1000);
      var li = document.createElement("li");
      li.setAttribute("data-node", message.node);
      li.setAttribute("data-to", String(message.to).toUpperCase());
      li.className = "new";
      var time = document.createElement("time");
      time.className = "mono";
      time.textContent = at.getFullYear() + "-" + pad(at.getMonth() + 1) + "-" + pad(at.getDate()) +
        " " + pad(at.getHours()) + ":" + pad(at.getMinutes()) + ":" + pad(at.getSeconds());
      var node = document.createElement("strong");
      node.textContent = message.node;
      var reason = document.createElement("span");
      reason.className = "muted";
      reason.textContent = "(" + (reasonLabels[message.reason] || message.reason) + ")";
      li.append(time, " ", node, " " + String(message.from).toUpperCase() + " \u2192 " +
        String(message.to).toUpperCase() + " ", reason);
      list.insertBefore(li, list.firstChild);
      // As many entries as the server renders (live.TIMELINE_ENTRIES): a page left
      // open for days must not grow without end; the API has the whole history.
      while (list.children.length > maxEntries) {
        list.removeChild(list.lastChild);
      }
    });
  }

  // An event's row as templates/console/_events.html draws it. Its time is the
  // server's wall clock as the API writes it (ISO 8601 in the server's time
  // zone), shown as the server shows it: the browser's zone plays no part.
  function eventRow(event) {
    var kind = eventKinds[event.kind] || { label: event.kind, flag: "flag-off" };
    var tr = document.createElement("tr");
    tr.setAttribute("data-event-kind", event.kind);
    tr.setAttribute("data-event-id", String(event.id));
    tr.className = "new";
    var when = document.createElement("td");
    when.className = "mono nowrap";
    var time = document.createElement("time");
    time.setAttribute("datetime", event.at);
    time.textContent = event.at.slice(0, 10) + " " + event.at.slice(11, 19);
    when.appendChild(time);
    var what = document.createElement("td");
    var flag = document.createElement("span");
    flag.className = "flag " + kind.flag;
    flag.textContent = kind.label;
    what.appendChild(flag);
    var message = document.createElement("td");
    message.textContent = event.message;
    tr.append(when, what, message);
    return tr;
  }

  // Newer first: by time, then by id (the panel's order, "-at", "-id").
  function newer(event, row) {
    var at = Date.parse(event.at);
    var other = Date.parse(row.querySelector("time").getAttribute("datetime"));
    return at > other || (at === other && event.id > Number(row.getAttribute("data-event-id")));
  }

  function showClusterEvent(event) {
    var body = eventPanel && eventPanel.querySelector("tbody");
    if (!body || event.kind === "test") {
      return;
    }
    var row = eventRow(event);
    var same = body.querySelector('tr[data-event-id="' + event.id + '"]');
    if (same) {
      body.replaceChild(row, same); // the same event again, or updated: in place
      return;
    }
    var empty = body.querySelector("tr.empty-row");
    if (empty) {
      empty.remove();
    }
    var rows = body.querySelectorAll("tr[data-event-id]");
    var before = Array.prototype.find.call(rows, function (other) {
      return newer(event, other);
    });
    if (!before && rows.length >= maxEvents) {
      return; // older than every event the panel holds
    }
    body.insertBefore(row, before || null);
    // As many rows as the server renders: a page left open for days stays short.
    while (body.querySelectorAll("tr[data-event-id]").length > maxEvents) {
      body.removeChild(body.lastElementChild);
    }
  }

  function connect() {
    retryTimer = null;
    setIndicator("connecting", "connecting…");
    source = new EventSource(url);
    source.addEventListener("open", function () {
      setIndicator("connected", "live");
    });
    source.addEventListener("status", function (event) {
      setIndicator("connected", "live");
      showStatus(JSON.parse(event.data));
    });
    source.addEventListener("transition", function (event) {
      showTransition(JSON.parse(event.data));
    });
    source.addEventListener("cluster_event", function (event) {
      showClusterEvent(JSON.parse(event.data));
    });
    source.addEventListener("error", function () {
      setIndicator("disconnected", "disconnected");
      // The browser retries by itself unless the server refused the stream
      // (e.g. a 403 after logging out elsewhere): then try again later.
      if (source.readyState === EventSource.CLOSED && retryTimer === null) {
        retryTimer = window.setTimeout(connect, 5000);
      }
    });
  }

  // Demo mode's Fail node / Restore node: post with fetch() and say the answer in
  // place, so the page (and its live stream) is not reloaded. Without this script
  // the forms post and redirect as usual.
  function showDemoMessage(ok, text) {
    var box = document.getElementById("demo-message");
    if (!box) {
      return;
    }
    box.className = "messages";
    box.hidden = false;
    box.innerHTML = "";
    var li = document.createElement("li");
    li.className = ok ? "success" : "error";
    li.textContent = text;
    box.appendChild(li);
  }

  document.querySelectorAll("form[data-demo-form]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var button = form.querySelector("button");
      button.disabled = true;
      fetch(form.action, {
        method: "POST",
        body: new FormData(form),
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      })
        .then(function (response) {
          return response.json().then(function (body) {
            showDemoMessage(response.ok && body.done, body.message);
          }, function () {
            showDemoMessage(false, "The request failed (HTTP " + response.status + ").");
          });
        })
        .catch(function () {
          showDemoMessage(false, "The console could not be reached.");
        })
        .then(function () {
          button.disabled = false;
        });
    });
  });

  connect();
})();
