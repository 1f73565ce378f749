// Local workspace: renders /ui/state for one person, live through /ui/events. No build step, no
// dependencies. Message content is only ever inserted as text nodes or as HTML built by
// mrkdwn()/token() below, which escape every piece of text they take from a message.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const S = {
    user: params.get("user") || "", channel: params.get("channel") || "", thread: null, data: null,
    lastSeen: null, overrides: {}, openFiles: new Set(), fileText: {}, modalKey: null,
    fetching: false, again: false, hiddenPanels: new Set(),
  };
  const EMOJI = {
    white_check_mark: "✅", heavy_check_mark: "✔️", x: "❌", warning: "⚠️", rotating_light: "🚨",
    hourglass: "⌛", hourglass_flowing_sand: "⏳", tada: "🎉", fire: "🔥", red_circle: "🔴",
    large_green_circle: "🟢", large_yellow_circle: "🟡", lock: "🔒", memo: "📝", page_facing_up: "📄",
    alarm_clock: "⏰", rocket: "🚀", thumbsup: "👍", "+1": "👍", eyes: "👀", no_entry: "⛔",
    stop_sign: "🛑", information_source: "ℹ️", arrow_right: "➡️", wave: "👋", bell: "🔔",
  };
  const TEXTY = /\.(md|markdown|txt|log|csv|json|sql|ya?ml|toml|ini|sh|py)$/i;

  // --- small helpers --------------------------------------------------------------------
  function h(tag, props, ...kids) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (k in node && !k.startsWith("aria") && !k.startsWith("data")) node[k] = v;
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const kid of kids.flat()) if (kid !== null && kid !== undefined && kid !== false) node.append(kid);
    return node;
  }
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  const decode = (s) => String(s).replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
  const emoji = (s) => String(s).replace(/:([a-z0-9_+-]+):/g, (m, name) => EMOJI[name] || m);
  const tsKey = (ts) => { const [a, b = ""] = String(ts || "0").split("."); return a.padStart(12, "0") + "." + (b + "000000").slice(0, 6); };
  const users = () => (S.data ? S.data.users : []);
  const userName = (id) => { const u = users().find((x) => x.id === id); return u ? u.name : id; };
  const channelOf = (id) => (S.data ? S.data.channels.find((c) => c.id === id) : null);
  const groupHandle = (id) => { const g = (S.data ? S.data.usergroups : []).find((x) => x.id === id); return g ? g.handle : id; };
  const sizeText = (n) => (n == null ? "" : n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(1)} KB` : `${(n / 1048576).toFixed(1)} MB`);

  async function post(path, body) {
    try {
      const r = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
      return await r.json();
    } catch (e) {
      return { ok: false, error: `the workspace server is not reachable (${e.message})` };
    }
  }
  let noticeTimer = null;
  function notice(text) {
    $("notice-text").textContent = text;
    $("notice").hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { $("notice").hidden = true; }, 10000);
  }
  function ackNotice(r, what) {
    if (!r.ok) notice(r.error);
    else if (!r.acked) notice(`${what} failed: the app answered HTTP ${r.status}${r.status === 200 ? " too late (over 3 s)" : ""}.`);
  }

  // --- mrkdwn ----------------------------------------------------------------------------
  function tokenText(inner) { // readable text of a <…> token, for code spans
    const [target, label] = splitLabel(inner);
    if (target.startsWith("@")) return "@" + (label || userName(target.slice(1)));
    if (target.startsWith("#")) return "#" + (label || (channelOf(target.slice(1)) || {}).name || target.slice(1));
    if (target.startsWith("!subteam^")) return "@" + ((label || "").replace(/^@/, "") || groupHandle(target.slice(9)));
    if (target.startsWith("!")) return label || "@" + target.slice(1).split("^")[0];
    return /^(https?:|mailto:)/i.test(target) ? decode(label || target) : "<" + decode(inner) + ">";
  }
  function splitLabel(inner) { const i = inner.indexOf("|"); return i < 0 ? [inner, ""] : [inner.slice(0, i), inner.slice(i + 1)]; }
  function token(inner) { // HTML for a <…> token: mentions, channel links, user groups, URLs
    const [target, label] = splitLabel(inner);
    if (target.startsWith("@")) {
      const me = target.slice(1) === S.user ? " me" : "";
      return `<span class="mention${me}">${esc(tokenText(inner))}</span>`;
    }
    if (target.startsWith("#")) {
      const id = target.slice(1), href = `?user=${encodeURIComponent(S.user)}&channel=${encodeURIComponent(id)}`;
      return `<a class="chan-ref" href="${esc(href)}" data-goto="${esc(id)}">${esc(tokenText(inner))}</a>`;
    }
    if (target.startsWith("!")) return `<span class="mention">${esc(tokenText(inner))}</span>`;
    const url = decode(target);
    if (/^(https?:|mailto:)/i.test(url)) return `<a href="${esc(url)}" target="_blank" rel="noopener noreferrer">${esc(decode(label || target))}</a>`;
    return esc("<" + decode(inner) + ">");
  }
  function mrkdwn(src) {
    const held = [];
    const hold = (html) => `\u0001${held.push(html) - 1}\u0002`;
    const plainTokens = (s) => s.replace(/<([^<>\n]+)>/g, (_, inner) => tokenText(inner));
    let s = String(src || "");
    s = s.replace(/```\n?([\s\S]*?)```\n?/g, (_, code) => hold(`<pre>${esc(decode(plainTokens(code)))}</pre>`));
    s = s.replace(/`([^`\n]+)`/g, (_, code) => hold(`<code>${esc(decode(plainTokens(code)))}</code>`));
    s = s.replace(/<([^<>\n]+)>/g, (_, inner) => hold(token(inner)));
    s = esc(emoji(decode(s)));
    s = s.replace(/(^|[^\w*])\*(?=\S)([^*\n]*?\S)\*(?![\w*])/g, "$1<strong>$2</strong>");
    s = s.replace(/(^|[^\w_])_(?=\S)([^_\n]*?\S)_(?![\w_])/g, "$1<em>$2</em>");
    s = s.replace(/(^|[^\w~])~(?=\S)([^~\n]*?\S)~(?![\w~])/g, "$1<del>$2</del>");
    const out = [];
    let quote = [];
    const flush = () => { if (quote.length) out.push(`<blockquote>${quote.join("<br>")}</blockquote>`); quote = []; };
    for (const line of s.split("\n")) {
      const m = line.match(/^&gt;\s?(.*)$/);
      if (m) { quote.push(m[1]); continue; }
      flush();
      out.push(line);
    }
    flush();
    s = out.join("\n").replace(/\n?(<blockquote>)/g, "$1").replace(/(<\/blockquote>)\n?/g, "$1").replace(/\n/g, "<br>");
    return s.replace(/\u0001(\d+)\u0002/g, (_, i) => held[+i]);
  }
  function textObj(obj, tag = "span") {
    if (!obj || typeof obj.text !== "string") return null;
    const node = h(tag, { class: "txt" });
    if (obj.type === "mrkdwn") node.innerHTML = mrkdwn(obj.text); // mrkdwn() escapes all message text
    else node.textContent = emoji(obj.text);
    return node;
  }
  function mrkdwnNode(text, tag = "div") { const node = h(tag); node.innerHTML = mrkdwn(text); return node; }

  // --- Block Kit ---------------------------------------------------------------------------
  const unsupported = (what) => h("span", { class: "unsupported", text: `[${what}: not shown in the local workspace]` });

  function renderBlocks(blocks, ctx) {
    return (blocks || []).map((b) => {
      switch (b.type) {
        case "header": return h("h3", { class: "b-header" }, textObj(b.text));
        case "section": {
          const main = h("div", { class: "b-main" }, textObj(b.text, "div"));
          if (b.fields) main.append(h("div", { class: "fields" }, b.fields.map((f) => textObj(f, "div"))));
          return h("div", { class: "b-section" }, main, b.accessory ? element(b.accessory, b, ctx) : null);
        }
        case "context": return h("div", { class: "b-context" }, (b.elements || []).map((e) =>
          e.type === "image" ? h("span", { class: "b-image", text: `[${e.alt_text || "image"}]` }) : textObj(e)));
        case "divider": return h("hr", { class: "b-divider" });
        case "actions": return h("div", { class: "b-actions" }, (b.elements || []).map((e) => element(e, b, ctx)));
        case "image": return h("div", { class: "b-image" }, (b.title ? b.title.text + " " : "") + `[image: ${b.alt_text || ""}] `,
          /^https?:/.test(b.image_url || "") ? h("a", { href: b.image_url, target: "_blank", rel: "noopener noreferrer", text: "open" }) : null);
        case "rich_text": return richText(b);
        default: return unsupported(`${b.type} block`);
      }
    });
  }
  function element(e, block, ctx) {
    if (e.type === "button") return button(e, ctx);
    if (e.type === "checkboxes") return checkboxes(e, block, ctx);
    if (e.type === "image") return h("span", { class: "b-image", text: `[${e.alt_text || "image"}]` });
    return unsupported(e.type || "element");
  }
  function button(e, ctx) {
    const label = (e.text && e.text.text) || "Button";
    const b = h("button", { type: "button", class: `btn ${e.style || ""}`, "data-fk": "a:" + e.action_id, text: emoji(label) });
    if (!ctx.ts) { b.disabled = true; b.title = "Buttons inside modals are not supported here"; return b; }
    b.addEventListener("click", () => {
      const go = async () => {
        if (e.url) window.open(e.url, "_blank", "noopener");
        b.setAttribute("aria-busy", "true");
        const r = await post("/ui/action", { user: S.user, channel: ctx.channel, ts: ctx.ts, action_id: e.action_id });
        b.removeAttribute("aria-busy");
        ackNotice(r, `“${label}”`);
      };
      if (e.confirm) confirmThen(e.confirm, go); else go();
    });
    return b;
  }
  function checkboxes(e, block, ctx) {
    const key = `${ctx.channel}|${ctx.ts}|${e.action_id}`;
    const initial = (e.initial_options || []).map((o) => o.value);
    const ov = S.overrides[key];
    const chosen = new Set(ov && ov.sig === ctx.blocksSig ? ov.selected : initial);
    const box = h("fieldset", { class: "checks" });
    for (const o of e.options || []) {
      const input = h("input", { type: "checkbox", value: o.value, checked: chosen.has(o.value), "data-fk": `c:${e.action_id}:${o.value}`, disabled: !ctx.ts });
      input.addEventListener("change", async () => {
        const selected = [...box.querySelectorAll("input:checked")].map((i) => i.value);
        S.overrides[key] = { selected, sig: ctx.blocksSig };
        const r = await post("/ui/action", { user: S.user, channel: ctx.channel, ts: ctx.ts, action_id: e.action_id, selected });
        ackNotice(r, "Ticking the box");
      });
      box.append(h("label", {}, input, h("span", {}, textObj(o.text), o.description ? textObj(o.description, "small") : null)));
    }
    box.querySelectorAll("small").forEach((n) => n.classList.add("option-desc"));
    return box;
  }
  function richText(b) {
    const inline = (els) => (els || []).map((x) => {
      let node;
      if (x.type === "text") {
        node = h(x.style && x.style.code ? "code" : "span", { text: x.text });
        if (x.style && x.style.bold) node = h("strong", {}, node);
        if (x.style && x.style.italic) node = h("em", {}, node);
        if (x.style && x.style.strike) node = h("del", {}, node);
      } else if (x.type === "link") node = /^(https?:|mailto:)/i.test(x.url || "") ? h("a", { href: x.url, target: "_blank", rel: "noopener noreferrer", text: x.text || x.url }) : h("span", { text: x.text || x.url || "" });
      else if (x.type === "user") node = h("span", { class: "mention", text: "@" + userName(x.user_id) });
      else if (x.type === "channel") node = h("span", { class: "mention", text: "#" + ((channelOf(x.channel_id) || {}).name || x.channel_id) });
      else if (x.type === "usergroup") node = h("span", { class: "mention", text: "@" + groupHandle(x.usergroup_id) });
      else if (x.type === "broadcast") node = h("span", { class: "mention", text: "@" + x.range });
      else if (x.type === "emoji") node = document.createTextNode(x.unicode ? String.fromCodePoint(...x.unicode.split("-").map((c) => parseInt(c, 16))) : emoji(`:${x.name}:`));
      else node = document.createTextNode("");
      return node;
    });
    const part = (p) => {
      if (p.type === "rich_text_preformatted") return h("pre", {}, inline(p.elements));
      if (p.type === "rich_text_quote") return h("blockquote", {}, inline(p.elements));
      if (p.type === "rich_text_list") return h(p.style === "ordered" ? "ol" : "ul", {}, (p.elements || []).map((i) => h("li", {}, inline(i.elements))));
      return h("p", { class: "rt" }, inline(p.elements));
    };
    return h("div", { class: "rich" }, (b.elements || []).map(part));
  }
  function attachments(list) {
    return (list || []).map((a) => {
      const node = h("div", { class: "attachment" },
        a.pretext ? mrkdwnNode(a.pretext) : null,
        a.title ? h("div", { class: "author" }, a.title_link && /^https?:/.test(a.title_link) ? h("a", { href: a.title_link, target: "_blank", rel: "noopener noreferrer", text: a.title }) : a.title) : null,
        a.text ? mrkdwnNode(a.text) : null,
        a.fields ? h("div", { class: "fields" }, a.fields.map((f) => h("div", {}, h("strong", { text: f.title || "" }), mrkdwnNode(f.value || "")))) : null,
        renderBlocks(a.blocks, {}),
        a.footer ? h("div", { class: "b-context", text: a.footer }) : null);
      if (/^#[0-9a-f]{3,8}$/i.test(a.color || "")) node.style.borderLeftColor = a.color;
      else if (a.color === "good" || a.color === "danger" || a.color === "warning") node.style.borderLeftColor = { good: "#2eb67d", danger: "#e01e5a", warning: "#ecb22e" }[a.color];
      return node;
    });
  }
  function files(list) {
    return (list || []).map((f) => {
      const ext = (f.name.match(/\.(\w{1,4})$/) || ["", "file"])[1].toUpperCase();
      const head = h("div", { class: "file-head" }, h("span", { class: "file-icon", "aria-hidden": "true", text: ext }), h("a", { href: f.url, download: f.name, "data-fk": "f:" + f.id, text: f.title || f.name }),
        h("span", { class: "file-size", text: `${f.name}${f.size != null ? " · " + sizeText(f.size) : ""}` }));
      const node = h("div", { class: "file", "data-file": f.id }, head);
      if (TEXTY.test(f.name) || /^text\//.test(f.mimetype || "")) {
        const pre = h("pre", { class: "preview", text: S.fileText[f.id] ?? "Loading…" });
        const det = h("details", { open: S.openFiles.has(f.id) }, h("summary", { text: `Preview ${f.name}`, "data-fk": "p:" + f.id }), pre);
        const load = async () => {
          if (S.fileText[f.id] === undefined) {
            try {
              const r = await fetch(f.url);
              S.fileText[f.id] = r.ok ? (await r.text()).slice(0, 200000) : `(could not load: HTTP ${r.status})`;
            } catch (e) { S.fileText[f.id] = `(could not load: ${e.message})`; }
          }
          pre.textContent = S.fileText[f.id];
        };
        det.addEventListener("toggle", () => { if (det.open) { S.openFiles.add(f.id); load(); } else S.openFiles.delete(f.id); });
        if (det.open) load();
        node.append(det);
      }
      return node;
    });
  }

  // --- messages ------------------------------------------------------------------------------
  function messageNode(m, opts) {
    const time = new Date(parseFloat(m.ts) * 1000);
    const ctx = { channel: opts.channel, ts: m.ts, blocksSig: JSON.stringify(m.blocks || []) };
    const meta = h("div", { class: "meta" },
      h("span", { class: "author", text: m.user_name }), m.is_bot ? h("span", { class: "badge", text: "APP" }) : null,
      h("time", { class: "time", datetime: time.toISOString(), title: time.toLocaleString(), text: time.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) }),
      m.edited ? h("span", { class: "edited", text: "(edited)" }) : null,
      opts.ephemeral ? h("span", { class: "eph-note", text: "Only visible to you" }) : null,
      m.reply_broadcast && !opts.inThread ? h("span", { class: "bcast", text: "replied to a thread" }) : null);
    const content = h("div", { class: "content" });
    if (m.blocks && m.blocks.length) content.append(...renderBlocks(m.blocks, ctx));
    else if (m.text) content.append(mrkdwnNode(m.text));
    content.append(...attachments(m.attachments), ...files(m.files));
    const body = h("div", { class: "body" }, meta, content);
    if (m.reply_count && !opts.inThread) {
      const label = `${m.reply_count} ${m.reply_count === 1 ? "reply" : "replies"}`;
      body.append(h("div", { class: "replies" }, h("button", { type: "button", class: "link-btn", "data-fk": "replies", text: label,
        onclick: () => openThread(opts.channel, m.ts) })));
    }
    return h("article", { class: `msg${m.is_bot ? " bot" : ""}${opts.ephemeral ? " ephemeral" : ""}`, "data-ts": m.ts,
      "data-channel": opts.channel, "data-ephemeral": opts.ephemeral ? "true" : null, "aria-label": `${m.user_name}${opts.ephemeral ? " (only visible to you)" : ""}` },
    h("div", { class: "avatar", "aria-hidden": "true", text: (m.user_name || "?").slice(0, 1).toUpperCase() }), body);
  }
  const itemsFor = (list, opts) => list.map((m) => ({
    key: `${opts.ephemeral ? "e" : "m"}:${m.ts}`, ts: m.ts,
    sig: S.namesSig + JSON.stringify(m), build: () => messageNode(m, opts),
  }));

  function renderList(box, items) { // keyed: untouched messages keep their DOM (and focus)
    const active = document.activeElement;
    const holder = active && box.contains(active) ? active.closest("[data-key]") : null;
    const focus = holder ? [holder.dataset.key, active.dataset.fk] : null;
    const old = new Map([...box.children].map((n) => [n.dataset.key, n]));
    const wanted = new Set(items.map((i) => i.key));
    for (const [k, n] of old) if (!wanted.has(k)) n.remove();
    let ref = box.firstElementChild;
    for (const it of items) {
      let node = old.get(it.key);
      if (!node || node._sig !== it.sig) {
        const fresh = it.build();
        fresh.dataset.key = it.key;
        fresh._sig = it.sig;
        if (node) { node.replaceWith(fresh); if (node === ref) ref = fresh; }
        node = fresh;
      }
      if (node === ref) ref = node.nextElementSibling; else box.insertBefore(node, ref);
    }
    if (focus && focus[1] && !box.contains(document.activeElement)) {
      const again = [...box.children].find((n) => n.dataset.key === focus[0]);
      const target = again && [...again.querySelectorAll("[data-fk]")].find((n) => n.dataset.fk === focus[1]);
      if (target) target.focus();
    }
  }

  // --- panes -----------------------------------------------------------------------------------
  function render() {
    const d = S.data;
    S.namesSig = JSON.stringify([d.users, d.usergroups, d.channels.map((c) => [c.id, c.name])]);
    $("team-name").textContent = d.team.name;
    document.title = `${d.team.name} · local workspace`;
    renderUsers();
    renderSidebar();
    renderChannel();
    renderThread();
    renderPanels();
    renderModal();
  }
  function renderUsers() {
    const sel = $("user"), people = users().filter((u) => !u.is_bot);
    const sig = JSON.stringify([people, S.user]);
    if (sel._sig === sig) return;
    sel._sig = sig;
    sel.replaceChildren(...people.map((u) => h("option", { value: u.id, text: u.real_name && u.real_name !== u.name ? `${u.name} (${u.real_name})` : u.name })));
    sel.value = S.user;
  }
  function renderSidebar() {
    const link = (c) => h("li", {}, h("a", {
      href: `?user=${encodeURIComponent(S.user)}&channel=${encodeURIComponent(c.id)}`, "data-channel": c.id,
      class: c.id !== S.channel && c.latest_ts && tsKey(c.latest_ts) > tsKey(S.lastSeen[c.id]) ? "unread" : "",
      "aria-current": c.id === S.channel ? "page" : null, text: (c.is_im ? "● " : c.is_private ? "🔒 " : "# ") + c.name,
    }));
    const chans = S.data.channels;
    const sig = JSON.stringify([S.channel, chans.map((c) => [c.id, c.name, c.latest_ts]), S.lastSeen]);
    if ($("channels")._sig === sig) return;
    $("channels")._sig = sig;
    $("channels").replaceChildren(...chans.filter((c) => !c.is_im).map(link));
    $("dms").replaceChildren(...chans.filter((c) => c.is_im).map(link));
  }
  function renderChannel() {
    const c = channelOf(S.channel);
    const box = $("messages");
    if (!c) { box.replaceChildren(h("p", { class: "empty", text: "No channel to show." })); return; }
    const where = c.is_im ? c.name : `#${c.name}`;
    $("channel-title").textContent = where;
    $("channel-info").textContent = c.is_im ? "Direct message with the app" : c.is_private ? "Private channel" : "";
    $("composer").placeholder = `Message ${where} — try /rollback help`;
    $("composer-label").textContent = `Message ${where}`;
    S.lastSeen[c.id] = c.latest_ts || S.lastSeen[c.id];
    const atBottom = box._channel !== c.id || box.scrollTop + box.clientHeight >= box.scrollHeight - 40;
    const eph = S.data.ephemerals.filter((e) => e.channel === c.id);
    const items = [...itemsFor(c.messages, { channel: c.id }), ...itemsFor(eph, { channel: c.id, ephemeral: true })]
      .sort((a, b) => (tsKey(a.ts) < tsKey(b.ts) ? -1 : 1));
    if (box.querySelector(".empty")) box.replaceChildren();
    renderList(box, items);
    if (!items.length) box.replaceChildren(h("p", { class: "empty", text: `This is the very beginning of ${where}.` }));
    if (atBottom) box.scrollTop = box.scrollHeight;
    box._channel = c.id;
  }
  function openThread(channel, ts) {
    S.thread = { channel, ts };
    renderThread();
    $("thread-composer").focus();
  }
  function closeThread() {
    S.thread = null;
    renderThread();
    $("composer").focus();
  }
  function renderThread() {
    const pane = $("thread"), t = S.thread, c = t && channelOf(t.channel);
    const parent = c && c.messages.concat(...Object.values(c.threads)).find((m) => m.ts === t.ts);
    if (!parent || t.channel !== S.channel) { pane.hidden = true; return; }
    pane.hidden = false;
    $("thread-title").textContent = `Thread in ${c.is_im ? c.name : "#" + c.name}`;
    const box = $("thread-messages");
    const atBottom = box._ts !== t.ts || box.scrollTop + box.clientHeight >= box.scrollHeight - 40;
    const replies = c.threads[t.ts] || [];
    const eph = S.data.ephemerals.filter((e) => e.channel === c.id && e.thread_ts === t.ts);
    const count = replies.length;
    const rest = [...itemsFor(replies, { channel: c.id, inThread: true }), ...itemsFor(eph, { channel: c.id, ephemeral: true, inThread: true })]
      .sort((a, b) => (tsKey(a.ts) < tsKey(b.ts) ? -1 : 1));
    renderList(box, [...itemsFor([parent], { channel: c.id, inThread: true }),
      { key: "sep", sig: String(count), build: () => h("div", { class: "thread-sep", text: `${count} ${count === 1 ? "reply" : "replies"}` }) }, ...rest]);
    if (atBottom) box.scrollTop = box.scrollHeight;
    box._ts = t.ts;
  }

  // --- side panels: what something beside the workspace shows (e.g. the local pager and mail) ------
  // Every string of a panel's data is inserted as text, never as HTML.
  const TONES = new Set(["bad", "warn", "good", "info"]);
  const panelLaidOut = (d) => d !== null && typeof d === "object" && Array.isArray(d.sections);
  const panelCount = (p) => (panelLaidOut(p.data) ? p.data.sections.reduce((n, s) => n + (Array.isArray(s.items) ? s.items.length : 0), 0) : 0);
  function togglePanel(name) {
    if (S.hiddenPanels.has(name)) S.hiddenPanels.delete(name); else S.hiddenPanels.add(name);
    renderPanels();
  }
  function renderPanels() {
    const panels = S.data.panels || [];
    const box = $("panels"), links = $("panel-links");
    const sig = JSON.stringify([panels, [...S.hiddenPanels]]);
    if (box._sig === sig) return;
    box._sig = sig;
    $("panel-links-title").hidden = links.hidden = !panels.length;
    links.replaceChildren(...panels.map((p) => h("li", {}, h("button", {
      type: "button", class: "panel-link", "data-panel": p.name, "aria-pressed": String(!S.hiddenPanels.has(p.name)),
      title: S.hiddenPanels.has(p.name) ? `Show ${p.title}` : `Hide ${p.title}`, text: `${p.title} · ${panelCount(p)}`,
      onclick: () => togglePanel(p.name),
    }))));
    const shown = panels.filter((p) => !S.hiddenPanels.has(p.name));
    box.hidden = !shown.length;
    box.replaceChildren(...shown.map(panelNode));
  }
  function panelNode(p, i) {
    const id = `panel-title-${i}`, d = p.data;
    const body = h("div", { class: "panel-body" });
    if (p.error) body.append(h("p", { class: "panel-error", role: "status", text: p.error }));
    else if (panelLaidOut(d)) {
      if (d.note) body.append(h("p", { class: "panel-note", text: String(d.note) }));
      body.append(...d.sections.map(panelSection));
    } else body.append(h("pre", { class: "preview", text: JSON.stringify(d, null, 2) }));
    return h("section", { class: "panel", "data-panel": p.name, "aria-labelledby": id },
      h("header", { class: "chan-header" }, h("h2", { id, text: p.title }),
        h("button", { type: "button", class: "icon-btn", "aria-label": `Hide ${p.title}`, text: "×", onclick: () => togglePanel(p.name) })),
      body);
  }
  function panelSection(s) {
    const items = Array.isArray(s.items) ? s.items : [], title = String(s.title || "");
    return h("section", { class: "panel-section" },
      h("h3", {}, title, " ", h("span", { class: "count", text: String(items.length) })),
      items.length ? h("ol", { class: "panel-items", "aria-label": title }, items.map(panelItem))
        : h("p", { class: "empty", text: String(s.empty || "Nothing yet.") }));
  }
  function panelItem(it) {
    const when = typeof it.time === "number" ? new Date(it.time * 1000) : null;
    const badges = (Array.isArray(it.badges) ? it.badges : []).map((b) => {
      const text = b !== null && typeof b === "object" ? b.text : b;
      const tone = b !== null && typeof b === "object" && TONES.has(b.tone) ? ` tone-${b.tone}` : "";
      return h("span", { class: `pbadge${tone}`, text: String(text ?? "") });
    });
    const fields = (Array.isArray(it.fields) ? it.fields : []).filter((f) => Array.isArray(f) && f.length === 2);
    return h("li", { class: "pitem", "data-item": it.key ? String(it.key) : null },
      h("div", { class: "pitem-head" }, when ? h("time", {
        class: "time", datetime: when.toISOString(), title: when.toLocaleString(),
        text: when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" }),
      }) : null, badges),
      h("div", { class: "pitem-title", text: String(it.title ?? "") }),
      fields.length ? h("dl", { class: "pfields" }, fields.flatMap(([k, v]) => [h("dt", { text: String(k) }), h("dd", { text: String(v) })])) : null);
  }

  // --- dialogs -----------------------------------------------------------------------------------
  let onConfirm = null;
  function confirmThen(c, action) {
    const dlg = $("confirm");
    $("confirm-title").textContent = (c.title && c.title.text) || "Are you sure?";
    const text = textObj(c.text, "div");
    $("confirm-text").replaceChildren(...(text ? [text] : []));
    $("confirm-ok").textContent = (c.confirm && c.confirm.text) || "Yes";
    $("confirm-ok").className = `btn ${c.style === "danger" ? "danger" : "primary"}`;
    $("confirm-deny").textContent = (c.deny && c.deny.text) || "Cancel";
    onConfirm = action;
    dlg.returnValue = "";
    dlg.showModal();
    $("confirm-deny").focus();
  }
  $("confirm").addEventListener("close", () => {
    const run = $("confirm").returnValue === "confirm" ? onConfirm : null;
    onConfirm = null;
    if (run) run();
  });

  function modalValues() {
    const out = {};
    $("modal").querySelectorAll("[data-block]").forEach((n) => { out[n.dataset.block] = n.value; });
    return out;
  }
  function renderModal() {
    const dlg = $("modal"), views = S.data.views, v = views[views.length - 1];
    if (!v) { S.modalKey = null; if (dlg.open) dlg.close(); return; }
    const key = `${S.user}|${v.id}|${v.hash}`;
    if (S.modalKey === key && dlg.open) return; // never wipe what is being typed
    const kept = S.modalKey && S.modalKey.startsWith(`${S.user}|${v.id}|`) ? modalValues() : {};
    S.modalKey = key;
    const body = h("div", { class: "modal-body" });
    (v.blocks || []).forEach((b, i) => {
      if (b.type !== "input") { body.append(...renderBlocks([b], { channel: null, ts: null })); return; }
      const e = b.element || {}, id = `modal-in-${i}`;
      const types = { plain_text_input: "text", number_input: "number", email_text_input: "email", url_text_input: "url" };
      if (!types[e.type]) { body.append(h("div", { class: "b-input" }, h("span", { text: (b.label && b.label.text) || "" }), unsupported(e.type))); return; }
      const init = kept[b.block_id] ?? e.initial_value ?? "";
      const field = e.multiline ? h("textarea", { id, rows: 4 }) : h("input", { id, type: types[e.type] });
      Object.assign(field, { value: init, placeholder: (e.placeholder && e.placeholder.text) || "" });
      field.dataset.block = b.block_id;
      if (e.max_length) field.maxLength = e.max_length;
      field.setAttribute("aria-describedby", `${id}-err`);
      body.append(h("div", { class: "b-input" },
        h("label", { for: id }, (b.label && b.label.text) || b.block_id, b.optional ? h("span", { class: "optional", text: " (optional)" }) : null),
        field, b.hint ? h("span", { class: "field-hint", text: b.hint.text }) : null,
        h("p", { class: "field-error", id: `${id}-err`, "data-error-for": b.block_id, hidden: true })));
    });
    body.append(h("p", { class: "modal-error", role: "alert", hidden: true }));
    const hasInputs = (v.blocks || []).some((b) => b.type === "input");
    const submit = v.submit || (hasInputs ? { text: "Submit" } : null);
    const form = h("form", { novalidate: true },
      h("h2", { id: "modal-title", text: (v.title && v.title.text) || "App" }), body,
      h("div", { class: "modal-foot" },
        h("button", { type: "button", class: "btn", text: (v.close && v.close.text) || "Cancel", onclick: () => closeModal(v.id) }),
        submit ? h("button", { type: "submit", class: "btn primary", text: submit.text }) : null));
    form.addEventListener("submit", (ev) => { ev.preventDefault(); submitModal(v.id, form); });
    dlg.replaceChildren(form);
    if (!dlg.open) dlg.showModal();
    const first = dlg.querySelector("[data-block]");
    if (first) first.focus();
  }
  async function submitModal(viewId, form) {
    const btn = form.querySelector("button[type=submit]");
    if (btn) btn.disabled = true;
    const r = await post("/ui/view", { user: S.user, view_id: viewId, values: modalValues() });
    if (btn) btn.disabled = false;
    form.querySelectorAll("[data-error-for]").forEach((p) => { p.hidden = true; p.textContent = ""; });
    form.querySelectorAll("[aria-invalid]").forEach((n) => n.removeAttribute("aria-invalid"));
    const general = form.querySelector(".modal-error");
    general.hidden = true;
    if (!r.ok || r.status !== 200) { general.textContent = r.ok ? `The app answered HTTP ${r.status}.` : r.error; general.hidden = false; return; }
    if (r.response_action === "errors") {
      for (const [block, msg] of Object.entries(r.errors || {})) {
        const p = [...form.querySelectorAll("[data-error-for]")].find((n) => n.dataset.errorFor === block);
        if (p) { p.textContent = msg; p.hidden = false; p.parentNode.querySelector("[data-block]").setAttribute("aria-invalid", "true"); }
        else { general.textContent = msg; general.hidden = false; }
      }
      return;
    }
    if (r.closed) { S.modalKey = null; $("modal").close(); }
  }
  async function closeModal(viewId) {
    S.modalKey = null;
    if ($("modal").open) $("modal").close();
    const r = await post("/ui/view/close", { user: S.user, view_id: viewId });
    if (!r.ok) notice(r.error);
  }
  $("modal").addEventListener("cancel", (ev) => { // Escape
    ev.preventDefault();
    const views = S.data ? S.data.views : [];
    if (views.length) closeModal(views[views.length - 1].id); else $("modal").close();
  });

  // --- state and live updates ------------------------------------------------------------------------
  function syncUrl() {
    const q = new URLSearchParams(location.search);
    q.set("user", S.user);
    if (S.channel) q.set("channel", S.channel);
    history.replaceState(null, "", `?${q}`);
  }
  async function refresh() {
    if (S.fetching) { S.again = true; return; }
    S.fetching = true;
    try {
      do {
        S.again = false;
        const r = await fetch(`/ui/state?user=${encodeURIComponent(S.user)}`);
        const d = await r.json();
        if (!r.ok) { notice(`${d.error} — showing the first user instead.`); S.user = ""; S.again = true; continue; }
        S.data = d;
        if (!S.user && d.me) S.user = d.me.id;
        if (!d.channels.some((c) => c.id === S.channel)) S.channel = d.channels.length ? d.channels[0].id : "";
        if (!S.lastSeen) S.lastSeen = Object.fromEntries(d.channels.map((c) => [c.id, c.latest_ts]));
        syncUrl();
        render();
      } while (S.again);
    } catch (e) {
      setConn(false);
    } finally {
      S.fetching = false;
    }
  }
  function setConn(live) {
    $("conn").textContent = live ? "Live" : "Reconnecting…";
    $("conn").className = `conn ${live ? "live" : "down"}`;
  }
  function connect() {
    const es = new EventSource("/ui/events");
    es.onmessage = (ev) => {
      setConn(true);
      const v = JSON.parse(ev.data).version;
      if (!S.data || v !== S.data.version) refresh();
    };
    es.onerror = () => setConn(false);
  }
  function selectChannel(id) {
    if (!channelOf(id)) { notice("You cannot see that channel."); return; }
    S.channel = id;
    S.thread = null;
    syncUrl();
    render();
    $("composer").focus();
  }

  // --- wiring ------------------------------------------------------------------------------------------
  async function send(input, threadTs) {
    const text = input.value.trim();
    if (!text || !S.user) return;
    input.value = "";
    input.style.height = "auto";
    const r = await post("/ui/command", { user: S.user, channel: S.channel, text, thread_ts: threadTs || undefined });
    if (!r.ok) { input.value = text; notice(r.error); return; }
    if (r.kind === "command") ackNotice(r, r.command);
  }
  const enterSends = (input, threadTs) => input.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) { ev.preventDefault(); send(input, threadTs()); }
  });
  for (const box of [$("composer"), $("thread-composer")]) { // grow with the text, up to the CSS max-height
    box.addEventListener("input", () => { box.style.height = "auto"; box.style.height = `${box.scrollHeight}px`; });
  }
  enterSends($("composer"), () => null);
  enterSends($("thread-composer"), () => S.thread && S.thread.ts);
  $("composer-form").addEventListener("submit", (ev) => { ev.preventDefault(); send($("composer"), null); });
  $("thread-form").addEventListener("submit", (ev) => { ev.preventDefault(); send($("thread-composer"), S.thread && S.thread.ts); });
  $("thread-close").addEventListener("click", closeThread);
  $("thread").addEventListener("keydown", (ev) => { if (ev.key === "Escape") closeThread(); });
  $("notice-close").addEventListener("click", () => { $("notice").hidden = true; });
  $("user").addEventListener("change", () => {
    S.user = $("user").value;
    Object.assign(S, { thread: null, overrides: {}, lastSeen: null, modalKey: null });
    if ($("modal").open) $("modal").close();
    syncUrl();
    refresh();
  });
  document.addEventListener("click", (ev) => {
    const a = ev.target.closest("a[data-channel], a[data-goto]");
    if (!a || ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.button !== 0) return;
    ev.preventDefault();
    selectChannel(a.dataset.channel || a.dataset.goto);
  });
  setConn(false);
  refresh();
  connect();
})();
