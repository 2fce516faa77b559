// The web page of `lash serve`: plain DOM code, no build step, no dependencies.
//
// A session view shows the settled session (GET sessions/ID), then follows its event stream
// (EventSource on sessions/ID/events?after=CURSOR), so nothing committed in between is missed.
// Live events (text deltas, tool calls) draw the running turn; each committed event makes the
// page read the settled view again, which replaces what was drawn live. Text from the server is
// only ever set as textContent, never parsed as HTML.
"use strict";

(() => {
  const token = new URLSearchParams(location.search).get("token");
  const $ = (id) => document.getElementById(id);

  // For tests and debugging: what the open session view has received.
  const page = (window.lashPage = { session: null, snapshotCursor: null, cursors: [], gaps: 0 });

  function el(tag, className, ...children) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    for (const child of children) {
      if (child !== null && child !== undefined) {
        node.append(typeof child === "string" ? document.createTextNode(child) : child);
      }
    }
    return node;
  }

  const json = (value) => JSON.stringify(value, null, 2);
  const when = (epoch) => (epoch ? new Date(epoch * 1000).toLocaleString() : "");
  const tokens = (usage) =>
    usage ? `${usage.input_tokens} in / ${usage.output_tokens} out` : "no usage";

  class ApiError extends Error {
    constructor(message, status, code) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  // A call of the JSON API; errors have the API's {"error": {"code", "message"}} shape.
  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const options = { method, headers, credentials: "same-origin" };
    if (body !== undefined) options.body = JSON.stringify(body);
    const response = await fetch(path, options);
    if (response.status === 204) return null;
    let data = null;
    try {
      data = await response.json();
    } catch {
      // not JSON (a proxy's error page): the status says enough
    }
    if (!response.ok) {
      const error = (data && data.error) || {};
      throw new ApiError(error.message || `${method} ${path}: HTTP ${response.status}`,
        response.status, error.code);
    }
    return data;
  }

  function showError(error) {
    const box = $("error");
    box.textContent = error ? String(error.message || error) : "";
    box.hidden = !error;
  }

  function notice(text) {
    $("notice").textContent = text;
  }

  // -- the list of sessions ------------------------------------------------------------------

  async function showSessions() {
    const data = await api("GET", "sessions");
    const list = $("sessions");
    list.replaceChildren();
    $("sessions-empty").hidden = data.sessions.length > 0;
    for (const row of data.sessions) {
      const link = el("a", "session-link", row.session_id);
      link.href = `#/sessions/${encodeURIComponent(row.session_id)}`;
      const status = el("span", `badge ${row.status || "new"}`, row.status || "no turn yet");
      const facts = el("span", "muted",
        `${row.turns} turn${row.turns === 1 ? "" : "s"} · ${tokens(row.usage)} tokens · ` +
        `updated ${when(row.updated_at)}` +
        (row.pending_inputs ? ` · ${row.pending_inputs} queued` : ""));
      const last = el("span", "last", row.last_user_message || "");
      list.append(el("li", null, el("div", "row", link, status), facts, last));
    }
  }

  // -- one session: the settled view --------------------------------------------------------

  let view = null; // {id, source, cursor, exists, live: Map(turn_id -> element), ...}

  function toolBox(call, plugin) {
    const box = el("div", "tool");
    box.dataset.callId = call.id;
    const args = call.invalid_arguments !== null && call.invalid_arguments !== undefined
      ? call.invalid_arguments : json(call.arguments);
    box.append(
      el("div", "tool-head", el("span", "role", "tool call"), el("code", null, call.name),
        plugin ? el("span", "muted", `(${plugin})`) : null),
      el("pre", "args", args),
    );
    return box;
  }

  function addResult(box, result) {
    const old = box.querySelector(".result");
    if (old) old.remove();
    const pre = el("pre", `result${result.is_error ? " is-error" : ""}`, result.content);
    box.append(el("div", "result", el("span", "role", result.is_error ? "error" : "result"), pre));
    if (result.projected) {
      box.append(el("div", "result muted", "the model was shown: ", el("pre", null, result.projected)));
    }
  }

  function nodeItem(node, calls) {
    switch (node.type) {
      case "user":
        return el("li", "msg user", el("span", "role", "user"), el("div", "text", node.text));
      case "assistant":
        if (!node.text) return null; // its tool calls are nodes of their own
        return el("li", "msg assistant", el("span", "role", "assistant"),
          el("div", "text", node.text));
      case "tool_call": {
        const box = toolBox(node.call, node.plugin);
        calls.set(node.call.id, box);
        return el("li", "msg", box);
      }
      case "tool_result": {
        const box = calls.get(node.call_id);
        if (box) {
          addResult(box, node);
          return null;
        }
        const orphan = el("div", "tool", el("div", "tool-head", el("code", null, node.name)));
        addResult(orphan, node);
        return el("li", "msg", orphan);
      }
      case "plugin":
        return el("li", "msg plugin", el("span", "role", `${node.plugin}: ${node.kind}`),
          el("pre", null, json(node.data)));
      case "frame":
        return el("li", "frame", el("span", null, `frame: ${node.reason}`),
          node.summary ? el("div", "text", node.summary) : null);
      case "outcome": {
        const why = [node.reason, node.detail, node.cancelled_by && `by ${node.cancelled_by}`]
          .filter(Boolean).join(" · ");
        const item = el("li", `outcome ${node.outcome}`,
          el("span", `badge ${node.outcome}`, node.outcome), why ? ` ${why}` : null,
          node.error ? el("pre", "is-error", node.error) : null);
        item.dataset.turnId = node.turn_id;
        return item;
      }
      default:
        return el("li", "msg", el("span", "role", node.type), el("pre", null, json(node)));
    }
  }

  function renderSnapshot(snapshot) {
    $("session-facts").replaceChildren(
      el("dt", null, "Revision"), el("dd", null, String(snapshot.revision)),
      el("dt", null, "Turns"), el("dd", null, String(snapshot.turns)),
      el("dt", null, "Model"),
      el("dd", null, [snapshot.config.provider, snapshot.config.model].filter(Boolean).join(" / ") || "default"),
    );
    const body = $("usage").tBodies[0];
    body.replaceChildren();
    const total = { input_tokens: 0, output_tokens: 0, cached_tokens: 0 };
    for (const [source, usage] of Object.entries(snapshot.usage)) {
      for (const key of Object.keys(total)) total[key] += usage[key];
      body.append(usageRow(source, usage));
    }
    body.append(usageRow("total", total));
    $("usage-box").querySelector("summary").textContent = `Usage: ${tokens(total)} tokens`;

    const calls = new Map();
    const items = snapshot.nodes.map((node) => nodeItem(node, calls)).filter(Boolean);
    $("transcript").replaceChildren(...items);
    // A turn the settled view has is drawn from it: its live drawing goes.
    for (const node of snapshot.nodes) {
      if (node.type === "outcome") dropLive(node.turn_id);
    }
    renderQueue(snapshot.inputs);
  }

  function usageRow(source, usage) {
    return el("tr", null, el("th", null, source), el("td", null, String(usage.input_tokens)),
      el("td", null, String(usage.output_tokens)), el("td", null, String(usage.cached_tokens)));
  }

  // Input a turn has claimed reads as that turn's user message, above what streams live;
  // input still waiting for a turn is listed below.
  function renderQueue(inputs) {
    const claimed = inputs.filter((input) => input.state === "claimed");
    const pending = inputs.filter((input) => input.state !== "claimed");
    $("claimed").replaceChildren(...claimed.map((input) =>
      el("li", "msg user", el("span", "role", "user · being answered"),
        el("div", "text", input.text))));
    $("queue").replaceChildren(...pending.map((input) =>
      el("li", "queued", el("span", "badge queued", "queued"), el("span", "text", input.text))));
  }

  // Read the settled view again; calls made while one runs are folded into one more read.
  async function refresh() {
    const current = view;
    if (current.reading) {
      current.again = true;
      return;
    }
    current.reading = true;
    try {
      do {
        current.again = false;
        try {
          const snapshot = await api("GET", `sessions/${encodeURIComponent(current.id)}`);
          if (view !== current) return;
          current.exists = true;
          renderSnapshot(snapshot);
          // (a committed turn the active frame no longer shows: compacted right after it)
          for (const turnId of current.committed) dropLive(turnId);
        } catch (error) {
          if (view !== current) return;
          if (error.code !== "unknown_session") throw error;
          current.exists = false;
          notice("This session has no history yet: send it a message to start it.");
        }
      } while (current.again);
    } finally {
      current.reading = false;
    }
  }

  // -- one session: live ---------------------------------------------------------------------

  function liveTurn(turnId) {
    let item = view.live.get(turnId);
    if (!item) {
      item = el("li", "turn-live");
      item.dataset.turnId = turnId;
      const stop = el("button", "stop", "Stop");
      stop.type = "button";
      stop.addEventListener("click", () => cancelTurn(turnId));
      item.append(el("div", "row", el("span", "badge running", "running"),
        el("code", "muted", turnId), stop));
      view.live.set(turnId, item);
      $("live").append(item);
    }
    return item;
  }

  function dropLive(turnId) {
    if (!view) return;
    const item = view.live.get(turnId);
    if (item) item.remove();
    view.live.delete(turnId);
    view.done.add(turnId);
  }

  function onEvent(event) {
    const data = event.data;
    if (!event.live) {
      view.cursor = event.cursor;
      page.cursors.push(event.cursor);
      if (event.type === "gap") page.gaps += 1;
    }
    if (event.live && view.done.has(data.turn_id)) return;
    switch (event.type) {
      case "turn_started": {
        const item = liveTurn(data.turn_id);
        if (!item.querySelector(".user")) {
          item.querySelector(".row").after(
            el("div", "msg user", el("span", "role", "user"), el("div", "text", data.input)));
        }
        notice("A turn is running.");
        break;
      }
      case "text_delta": {
        const item = liveTurn(data.turn_id);
        let last = item.lastElementChild;
        if (!last.classList.contains("assistant")) {
          last = el("div", "msg assistant", el("span", "role", "assistant"), el("div", "text"));
          item.append(last);
        }
        last.querySelector(".text").append(data.text);
        break;
      }
      case "tool_call_started":
        liveTurn(data.turn_id).append(toolBox(data.call));
        break;
      case "tool_call_finished": {
        const item = liveTurn(data.turn_id);
        const box = [...item.querySelectorAll(".tool")].find((b) => b.dataset.callId === data.call_id);
        if (box) addResult(box, data.result);
        break;
      }
      case "plugin_event":
        if (event.live) {
          liveTurn(data.turn_id || "").append(el("div", "msg plugin",
            el("span", "role", `${data.plugin}: ${data.type}`), el("pre", null, json(data.data))));
        }
        break;
      case "turn_committed":
        notice(`Turn ${data.index} ${data.outcome}${data.reason ? ` (${data.reason})` : ""}.`);
        break;
      default:
        break;
    }
    if (!event.live) {
      // The settled view replaces the live drawing of a committed turn (not before: no flicker).
      if (event.type === "turn_committed") view.committed.add(data.turn_id);
      refresh().catch(showError);
    }
    $("session-view").dataset.state = view.live.size ? "running" : "idle";
  }

  // The event stream, after the last committed event seen. On an error the page reconnects
  // itself, after its own cursor (a browser's automatic reconnection would resend the first
  // URL's ?after=).
  function connect() {
    const current = view;
    const query = new URLSearchParams();
    if (current.cursor) query.set("after", current.cursor);
    if (token) query.set("token", token);
    const source = new EventSource(`sessions/${encodeURIComponent(current.id)}/events?${query}`);
    current.source = source;
    source.onopen = () => {
      current.delay = 1000;
      $("connection").textContent = "live";
    };
    source.onmessage = (message) => {
      if (view === current) onEvent(JSON.parse(message.data));
    };
    source.onerror = () => {
      source.close();
      if (view !== current) return;
      $("connection").textContent = "reconnecting…";
      // 1 s, then twice as long after each failure, up to 10 s (a server that is down).
      current.retry = setTimeout(() => {
        if (view === current) connect();
      }, current.delay);
      current.delay = Math.min(current.delay * 2, 10000);
    };
  }

  async function openSession(id) {
    closeSession();
    const current = (view = {
      id, source: null, cursor: null, exists: false, live: new Map(), done: new Set(), committed: new Set(),
      reading: false, again: false, retry: null, delay: 1000, key: null,
    });
    Object.assign(page, { session: id, snapshotCursor: null, cursors: [], gaps: 0 });
    $("session-title").textContent = id;
    $("session-facts").replaceChildren();
    $("transcript").replaceChildren();
    $("live").replaceChildren();
    $("claimed").replaceChildren();
    $("queue").replaceChildren();
    notice("");
    try {
      const snapshot = await api("GET", `sessions/${encodeURIComponent(id)}`);
      if (view !== current) return;
      current.exists = true;
      current.cursor = page.snapshotCursor = snapshot.cursor;
      renderSnapshot(snapshot);
    } catch (error) {
      if (error.code !== "unknown_session") throw error;
      notice("This session has no history yet: send it a message to start it.");
    }
    if (view === current) connect();
  }

  function closeSession() {
    if (!view) return;
    if (view.source) view.source.close();
    clearTimeout(view.retry);
    view = null;
    $("connection").textContent = "";
  }

  // -- sending -------------------------------------------------------------------------------

  // A key per message, kept until the server took it: sending again after a failure cannot
  // queue the message twice.
  function inputKey() {
    if (!view.key) {
      view.key = window.crypto && crypto.randomUUID
        ? crypto.randomUUID()
        : `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
    }
    return view.key;
  }

  async function send(runNow) {
    const box = $("message");
    const text = box.value;
    if (!view || !text.trim()) {
      box.focus();
      return;
    }
    const path = `sessions/${encodeURIComponent(view.id)}/${runNow ? "turns" : "inputs"}`;
    const body = runNow ? { text } : { text, key: inputKey() };
    const current = view;
    try {
      await api("POST", path, body);
    } catch (error) {
      showError(error);
      return;
    }
    showError(null);
    current.key = null;
    if (view !== current) return;
    box.value = "";
    notice(runNow ? "The turn started." : "Queued.");
    if (!current.exists) await refresh();
  }

  async function cancelTurn(turnId) {
    const path = `sessions/${encodeURIComponent(view.id)}/turns/${encodeURIComponent(turnId)}/cancel`;
    const receipt = await api("POST", path);
    notice(`Stop: ${receipt.status.replace("_", " ")}.`);
  }

  // -- routes and wiring ---------------------------------------------------------------------

  async function route() {
    showError(null);
    const match = location.hash.match(/^#\/sessions\/(.+)$/);
    $("sessions-view").hidden = Boolean(match);
    $("session-view").hidden = !match;
    if (match) {
      await openSession(decodeURIComponent(match[1]));
    } else {
      closeSession();
      await showSessions();
    }
  }

  function start() {
    $("refresh-sessions").addEventListener("click", () => showSessions().catch(showError));
    $("open-session").addEventListener("submit", (submit) => {
      submit.preventDefault();
      const id = $("open-id").value.trim();
      if (id) location.hash = `#/sessions/${encodeURIComponent(id)}`;
    });
    $("composer").addEventListener("submit", (submit) => {
      submit.preventDefault();
      send(false).catch(showError);
    });
    $("run-now").addEventListener("click", () => send(true).catch(showError));
    $("message").addEventListener("input", () => {
      if (view) view.key = null; // other text: another message
    });
    $("message").addEventListener("keydown", (key) => {
      if (key.key !== "Enter" || key.shiftKey || key.isComposing) return;
      key.preventDefault();
      send(key.ctrlKey || key.metaKey).catch(showError);
    });
    window.addEventListener("hashchange", () => {
      route().catch(showError);
      $("main").focus();
    });
    route().catch(showError);
  }

  start();
})();
