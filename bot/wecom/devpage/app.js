// The chat page of the local WeChat Work. Everything the page shows comes from
// GET api/feed (what the bot sent, read from the emulator's log); everything a
// person does goes through api/say and api/click as real callbacks to the bot.
"use strict";

const state = {
  config: null,
  people: [],
  byId: new Map(),
  groups: [],
  events: [],
  next: 0,
  me: "",
  chat: "",
  seen: new Map(),   // chat -> number of its events already viewed
  polling: false,
};

const $ = (id) => document.getElementById(id);

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => (
    { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

// WeChat Work markdown, the part the bot uses: headings, bold, code, links,
// quotes, lists and <font color="info|comment|warning">.
function inline(escaped) {
  return escaped
    // Masked phones and VINs (138****5678) hold runs of asterisks: never bold.
    .replace(/(?<!\*)\*\*(?!\*)([^*]+?)(?<!\*)\*\*(?!\*)/g, "<b>$1</b>")
    .replace(/`([^`]+)`/g, "<code>$1</code>")
    .replace(/\[([^\]]+)\]\((https?:\/\/[^)\s]+)\)/g,
      '<a href="$2" target="_blank" rel="noopener">$1</a>')
    .replace(/&lt;font color=&quot;(info|comment|warning)&quot;&gt;(.*?)&lt;\/font&gt;/g,
      '<span class="font-$1">$2</span>');
}

function markdown(source) {
  return escapeHtml(source).split("\n").map((line) => {
    let m;
    if ((m = line.match(/^#{1,6}\s+(.*)$/))) return `<div class="md-h">${inline(m[1])}</div>`;
    if ((m = line.match(/^&gt;\s?(.*)$/))) return `<div class="md-quote">${inline(m[1])}</div>`;
    if ((m = line.match(/^\s*[-*]\s+(.*)$/))) return `<div class="md-li">${inline(m[1])}</div>`;
    if (!line.trim()) return '<div class="md-gap"></div>';
    return `<div>${inline(line)}</div>`;
  }).join("");
}

async function api(path, options = {}) {
  const response = await fetch(path, options);
  let body = null;
  try { body = await response.json(); } catch (_) { body = null; }
  if (!response.ok) {
    const reason = body && (body.error || JSON.stringify(body));
    throw new Error(`${response.status} ${reason || response.statusText}`);
  }
  return body;
}

function post(path, body) {
  return api(path, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
}

function showError(message) {
  $("error").textContent = message || "";
}

function timeText(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleTimeString("zh-CN",
    { timeZone: state.config.timezone, hour12: false });
}

// -- people and conversations ------------------------------------------------

function placeOf(p) {
  return p.dealer || p.region || p.role_label;
}

function fillPeople() {
  const select = $("person");
  select.innerHTML = "";
  const groups = new Map();
  for (const p of state.people) {
    const place = p.role === "call_centre" ? "呼叫中心" : placeOf(p);
    if (!groups.has(place)) groups.set(place, []);
    groups.get(place).push(p);
  }
  for (const [place, members] of groups) {
    const optgroup = document.createElement("optgroup");
    optgroup.label = place;
    for (const p of members) {
      const option = document.createElement("option");
      option.value = p.userid;
      option.textContent = `${p.name}（${p.userid}）· ${p.role_label}`;
      optgroup.appendChild(option);
    }
    select.appendChild(optgroup);
  }
  select.value = state.me;
}

function appChat() {
  return `app:${state.me}`;
}

function chatList() {
  const chats = [{ id: appChat(), name: `${state.config.robot_name}（应用）`, kind: "app" }];
  for (const g of state.groups) chats.push({ id: g.chatid, name: g.name || g.chatid, kind: g.kind });
  return chats;
}

const KIND_LABELS = {
  app: "单聊", dealer: "经销商群", region: "区域群", hq: "本部群", call_centre: "呼叫中心群",
};

function renderWho() {
  const p = state.byId.get(state.me);
  if (!p) { $("who").textContent = ""; return; }
  $("who").innerHTML = `<div class="avatar">${escapeHtml(p.name.slice(0, 1))}</div>
    <div><div class="who-name">${escapeHtml(p.name)}</div>
    <div class="who-role">${escapeHtml(p.role_label)}</div>
    <div class="who-place">${escapeHtml([p.dealer, p.region].filter(Boolean).join(" · "))}</div></div>`;
}

function renderChats() {
  const list = $("chats");
  list.innerHTML = "";
  for (const chat of chatList()) {
    const item = document.createElement("li");
    item.className = chat.id === state.chat ? "active" : "";
    item.dataset.chat = chat.id;
    const unread = eventsOf(chat.id).length - (state.seen.get(chat.id) || 0);
    item.innerHTML = `<span class="chat-name">${escapeHtml(chat.name)}</span>
      <span class="chat-kind">${KIND_LABELS[chat.kind] || ""}</span>
      ${unread > 0 && chat.id !== state.chat ? `<span class="badge">${unread}</span>` : ""}`;
    item.addEventListener("click", () => selectChat(chat.id));
    list.appendChild(item);
  }
}

function selectChat(id) {
  state.chat = id;
  showError("");
  renderAll(true);
  $("text").focus();
}

function isGroup(chat) {
  return !chat.startsWith("app:");
}

function renderHead() {
  const chat = chatList().find((c) => c.id === state.chat);
  $("chat-title").textContent = chat ? chat.name : state.chat;
  const name = state.config.robot_name;
  $("chat-hint").textContent = isGroup(state.chat)
    ? `群聊 ${state.chat} · 机器人只收到 @${name} 的消息，发送时自动加上`
    : `与「${name}」应用的单聊 · 派单卡片、审批卡片和提醒发到这里`;
  const quick = isGroup(state.chat)
    ? ["/help", "/list", "/show 1", "/respond 1 已电话联系客户"]
    : ["/help", "/list", "/show 1"];
  $("quick").innerHTML = "";
  for (const command of quick) {
    const chip = document.createElement("button");
    chip.type = "button";
    chip.className = "chip";
    chip.textContent = command;
    chip.addEventListener("click", () => { $("text").value = command; $("text").focus(); });
    $("quick").appendChild(chip);
  }
}

// -- messages ------------------------------------------------------------------

function eventsOf(chat) {
  return state.events.filter((e) => e.chat === chat);
}

// The chat as it stands: messages in order, each card (known by its task_id)
// in its latest version.
function itemsOf(chat) {
  const items = [];
  const cards = new Map();
  for (const event of eventsOf(chat)) {
    if (event.kind === "card") {
      const item = { ...event, card: { ...event.card } };
      cards.set(event.task_id, item);
      items.push(item);
    } else if (event.kind === "card_update") {
      const target = cards.get(event.task_id);
      if (!target && !event.card) continue;  // a label change of a card not shown here
      const card = event.card
        ? { ...event.card }
        : { ...target.card, replace_text: event.replace_name };
      if (target) {
        target.card = card;
        target.updated = event.time;
      } else {
        items.push({ ...event, kind: "card", card, updated: event.time });
      }
    } else {
      items.push(event);
    }
  }
  return items;
}

function senderName(event) {
  if (event.sender !== "bot") {
    const p = state.byId.get(event.sender);
    return p ? p.name : event.sender;
  }
  const name = state.config.robot_name;
  return event.via === "webhook" || event.via === "appchat" ? `${name}（群通知）` : name;
}

function renderCard(item) {
  const card = item.card || {};
  const box = document.createElement("div");
  box.className = "card" + (item.updated ? " updated" : "");
  if (card.task_id) box.dataset.taskId = card.task_id;
  const source = card.source && card.source.desc ? `<div class="card-source">${escapeHtml(card.source.desc)}</div>` : "";
  const title = card.main_title || {};
  const rows = (card.horizontal_content_list || []).map((row) =>
    `<div class="card-row"><span class="k">${escapeHtml(row.keyname || "")}</span>
     <span class="v">${escapeHtml(row.value || "")}</span></div>`).join("");
  const emphasis = card.emphasis_content
    ? `<div class="card-emphasis"><b>${escapeHtml(card.emphasis_content.title || "")}</b>
       <span>${escapeHtml(card.emphasis_content.desc || "")}</span></div>` : "";
  box.innerHTML = `${source}
    <div class="card-title">${escapeHtml(title.title || "")}</div>
    ${title.desc ? `<div class="card-desc">${escapeHtml(title.desc)}</div>` : ""}
    ${emphasis}
    ${card.sub_title_text ? `<div class="card-sub">${escapeHtml(card.sub_title_text)}</div>` : ""}
    ${rows ? `<div class="card-rows">${rows}</div>` : ""}`;
  const buttons = document.createElement("div");
  buttons.className = "card-buttons";
  if (card.replace_text) {
    const done = document.createElement("button");
    done.type = "button";
    done.disabled = true;
    done.className = "done";
    done.textContent = card.replace_text;
    buttons.appendChild(done);
  } else {
    for (const spec of card.button_list || []) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = spec.style === 1 ? "primary" : "";
      button.textContent = spec.text || spec.key;
      button.addEventListener("click", () => clickButton(item, spec, buttons));
      buttons.appendChild(button);
    }
  }
  if (buttons.childElementCount) box.appendChild(buttons);
  if (item.updated) {
    const note = document.createElement("div");
    note.className = "card-note";
    note.textContent = `卡片已更新 ${timeText(item.updated)}`;
    box.appendChild(note);
  }
  return box;
}

function renderItem(item) {
  if (item.kind === "click") {
    const note = document.createElement("div");
    note.className = "system";
    note.textContent = `${senderName(item)} 点击了「${item.text}」 ${timeText(item.time)}`;
    return note;
  }
  const mine = item.sender === state.me;
  const row = document.createElement("div");
  row.className = "msg" + (mine ? " mine" : "") + (item.sender === "bot" ? " bot" : "");
  const name = senderName(item);
  const via = { webhook: "群机器人 webhook", appchat: "appchat/send", app: "应用消息",
    robot: "智能机器人", response_url: "response_url" }[item.via] || "";
  row.innerHTML = `<div class="avatar">${escapeHtml(name.slice(0, 1))}</div>
    <div class="body"><div class="meta">${escapeHtml(name)} · ${timeText(item.time)}
    <span class="via">${via}</span></div></div>`;
  const body = row.querySelector(".body");
  if (item.kind === "card") {
    body.appendChild(renderCard(item));
  } else if (item.kind === "image") {
    const bubble = document.createElement("div");
    bubble.className = "bubble image";
    const image = document.createElement("img");
    image.src = item.src;
    image.alt = "图片（报表图表）";
    bubble.appendChild(image);
    body.appendChild(bubble);
  } else {
    const bubble = document.createElement("div");
    bubble.className = "bubble";
    if (item.kind === "markdown") bubble.innerHTML = markdown(item.text || "");
    else bubble.textContent = item.text || "";
    body.appendChild(bubble);
  }
  return row;
}

function renderMessages(forceBottom) {
  const box = $("messages");
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  box.innerHTML = "";
  const items = itemsOf(state.chat);
  if (!items.length) {
    box.innerHTML = `<div class="empty">还没有消息。${isGroup(state.chat)
      ? "试试发送 /help，或在右侧新建一条投诉。"
      : "新派的投诉卡片会发到这里。"}</div>`;
  }
  for (const item of items) box.appendChild(renderItem(item));
  if (forceBottom || atBottom) box.scrollTop = box.scrollHeight;
  state.seen.set(state.chat, eventsOf(state.chat).length);
}

function renderAll(forceBottom = false) {
  renderWho();
  renderHead();
  renderMessages(forceBottom);
  renderChats();
}

// -- actions -------------------------------------------------------------------

async function poll() {
  if (state.polling) return;
  state.polling = true;
  try {
    const feed = await api(`api/feed?since=${state.next}`);
    state.next = feed.next;
    if (feed.events.length) {
      state.events.push(...feed.events);
      const here = feed.events.some((e) => e.chat === state.chat);
      if (here) renderMessages(false);
      renderChats();
    }
  } catch (error) {
    showError(`无法读取消息：${error.message}`);
  } finally {
    state.polling = false;
  }
}

async function say(event) {
  event.preventDefault();
  const text = $("text").value.trim();
  if (!text) return;
  $("send").disabled = true;
  showError("");
  try {
    await post("api/say", {
      userid: state.me, chatid: isGroup(state.chat) ? state.chat : null, text,
    });
    $("text").value = "";
  } catch (error) {
    showError(`发送失败：${error.message}`);
  } finally {
    $("send").disabled = false;
    await poll();
    renderMessages(true);
  }
}

async function clickButton(item, spec, buttons) {
  for (const b of buttons.querySelectorAll("button")) b.disabled = true;
  showError("");
  try {
    await post("api/click", {
      userid: state.me,
      chatid: isGroup(state.chat) ? state.chat : null,
      task_id: item.card.task_id,
      key: spec.key,
    });
  } catch (error) {
    showError(`点击失败：${error.message}`);
    for (const b of buttons.querySelectorAll("button")) b.disabled = false;
  }
  await poll();
}

function randomVehicle(form) {
  const letters = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789";
  let vin = "LFV";
  while (vin.length < 17) vin += letters[Math.floor(Math.random() * letters.length)];
  form.vin.value = vin;
  form.plate.value = `沪A${String(Math.floor(Math.random() * 90000) + 10000)}`;
}

async function createComplaint(event) {
  event.preventDefault();
  const form = $("complaint");
  const result = $("complaint-result");
  const body = {};
  for (const name of ["customer_name", "customer_phone", "car_model", "plate", "vin", "channel",
    "dealer_code", "description"]) body[name] = form[name].value;
  $("create").disabled = true;
  result.className = "result";
  result.textContent = "提交中…";
  try {
    const response = await fetch("/api/complaints", {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${form.token.value}` },
      body: JSON.stringify(body),
    });
    const answer = await response.json();
    if (!response.ok) {
      const fields = answer.fields
        ? Object.entries(answer.fields).map(([k, v]) => `${k}：${v}`).join("；") : "";
      throw new Error(`${response.status} ${answer.error || ""} ${fields}`);
    }
    const labels = state.config.labels;
    result.className = "result ok";
    result.textContent = `已创建投诉 #${answer.number}：${labels[answer.category] || answer.category}，`
      + `${labels[answer.status] || answer.status}（${labels[answer.owner] || answer.owner}）。`
      + "通知和卡片几秒内送达。";
    randomVehicle(form);
  } catch (error) {
    result.className = "result bad";
    result.textContent = `创建失败：${error.message}`;
  } finally {
    $("create").disabled = false;
  }
}

// -- what leaves WeChat Work: the customer's SMS, the managers' e-mails -------

const outside = { sms: -1, mails: -1 };

function fillList(list, items, render, none) {
  list.innerHTML = "";
  if (!items.length) list.innerHTML = `<li class="none">${none}</li>`;
  for (const item of items.slice().reverse()) list.appendChild(render(item));
}

function smsItem(sms) {
  const item = document.createElement("li");
  item.className = "sms";
  item.innerHTML = `<div class="to">发给 ${escapeHtml(sms.phone)} · ${timeText(sms.time)}</div>
    <div class="sms-text">${escapeHtml(sms.text)}</div>`;
  return item;
}

function mailItem(mail) {
  const item = document.createElement("li");
  item.className = "mail";
  const files = mail.attachments.length
    ? `<div class="files">附件：${mail.attachments.map(escapeHtml).join("、")}</div>` : "";
  item.innerHTML = `<details><summary><span class="subject">${escapeHtml(mail.subject)}</span>
    <div class="to">发给 ${escapeHtml(mail.to.join("、"))} · ${timeText(mail.time)}</div></summary>
    <pre>${escapeHtml(mail.text)}</pre>${files}</details>`;
  return item;
}

async function pollOutside() {
  let view;
  try {
    view = await api("api/outside");
  } catch (_) {
    return;  // a chat page without the demo's catchers
  }
  $("outside-missing").textContent = view.missing.join("；");
  if (view.sms.length !== outside.sms) {
    outside.sms = view.sms.length;
    fillList($("sms-list"), view.sms, smsItem, "还没有短信。");
  }
  if (view.mails.length !== outside.mails) {
    outside.mails = view.mails.length;
    fillList($("mail-list"), view.mails, mailItem, "还没有邮件。");
  }
}

async function reportNow() {
  const result = $("report-result");
  $("report-now").disabled = true;
  result.className = "result";
  result.textContent = "正在生成报表…";
  try {
    const answer = await post("api/report", {});
    result.className = "result ok";
    result.textContent = answer.delivered
      ? `已生成 ${answer.period} 的 ${answer.delivered} 份报表：图表发到各群，工作簿发到经理邮箱。`
      : `${answer.period} 的报表已经发过（每周一次）。`;
  } catch (error) {
    result.className = "result bad";
    result.textContent = `生成失败：${error.message}`;
  } finally {
    $("report-now").disabled = false;
  }
}

async function start() {
  const [config, people, groups] = await Promise.all([
    api("api/config"), api("api/people"), api("api/groups"),
  ]);
  state.config = config;
  state.people = people;
  state.byId = new Map(people.map((p) => [p.userid, p]));
  state.groups = groups;
  state.me = state.byId.has("sh.zhang") ? "sh.zhang" : (people[0] || {}).userid || "";
  state.chat = groups.some((g) => g.chatid === "wrGRP-SH001")
    ? "wrGRP-SH001" : (groups[0] ? groups[0].chatid : appChat());
  fillPeople();

  const form = $("complaint");
  for (const c of config.channels) form.channel.add(new Option(c.label, c.value));
  for (const d of config.dealers) form.dealer_code.add(new Option(`${d.name}（${d.code}）`, d.code));
  form.token.value = config.api_token;
  randomVehicle(form);

  $("person").addEventListener("change", (e) => {
    const wasApp = !isGroup(state.chat);
    state.me = e.target.value;
    if (wasApp) state.chat = appChat();
    renderAll(true);
  });
  $("composer").addEventListener("submit", say);
  $("text").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      $("composer").requestSubmit();
    }
  });
  form.addEventListener("submit", createComplaint);
  $("report-now").addEventListener("click", reportNow);

  await poll();
  renderAll(true);
  await pollOutside();
  setInterval(poll, 1000);
  setInterval(pollOutside, 1000);
}

start().catch((error) => showError(`页面加载失败：${error.message}`));
