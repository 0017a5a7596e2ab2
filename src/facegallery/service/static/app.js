// The facegallery page: identify dropped photos, name unknown faces, browse and manage people.
// Plain JavaScript against the /v1 API; nothing is fetched from outside this server.
"use strict";

const $ = (sel) => document.querySelector(sel);
const keyInput = $("#api-key");
const statusLine = $("#status");

keyInput.value = sessionStorage.getItem("facegallery-key") || "";
keyInput.addEventListener("input", () => {
  sessionStorage.setItem("facegallery-key", keyInput.value);
  loadPeople();
});
$("#key-form").addEventListener("submit", (e) => e.preventDefault());

function say(text, isError = false) {
  statusLine.textContent = text;
  statusLine.classList.toggle("error", isError);
}

async function api(method, path, body) {
  const headers = {};
  if (keyInput.value) headers["X-API-Key"] = keyInput.value;
  if (body && !(body instanceof FormData)) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(body);
  }
  const response = await fetch(path, { method, headers, body });
  const type = response.headers.get("content-type") || "";
  const data = type.includes("application/json") ? await response.json() : await response.blob();
  if (!response.ok) {
    const err = new Error((data && data.error) || `${response.status} ${response.statusText}`);
    err.status = response.status;
    throw err;
  }
  return data;
}

// A refused key (401) is a question for the person at the page, not an error to show raw.
function keyPrompt() {
  const box = document.createElement("div");
  box.className = "need-key";
  const text = document.createElement("p");
  text.textContent = keyInput.value
    ? "This API key is not accepted. Check the key in the API key field at the top of the page."
    : "This server needs an API key to show its people. Enter it in the API key field at the top of the page.";
  const go = document.createElement("button");
  go.type = "button";
  go.textContent = "Enter the key";
  go.addEventListener("click", () => keyInput.focus());
  box.append(text, go);
  return box;
}

const person = (name) => `/v1/people/${encodeURIComponent(name)}`;

// ----- identify -----------------------------------------------------------------------------------
const drop = $("#drop");
const picker = $("#photos");
picker.addEventListener("change", () => identifyAll(picker.files));
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  identifyAll(e.dataTransfer.files);
});

async function identifyAll(files) {
  const list = Array.from(files || []);
  if (!list.length) return;
  $("#results").replaceChildren();
  say(`Looking at ${list.length} photo${list.length > 1 ? "s" : ""}…`);
  let faces = 0;
  for (const file of list) {
    try {
      faces += await identifyOne(file);
    } catch (err) {
      showFailure(file, err);
    }
  }
  say(`Done: ${faces} face${faces === 1 ? "" : "s"} in ${list.length} photo${list.length > 1 ? "s" : ""}.`);
  picker.value = "";
}

async function identifyOne(file) {
  const form = new FormData();
  form.append("photos", file, file.name);
  const answer = await api("POST", "/v1/identify", form);
  if (answer.skipped.length) throw new Error(answer.skipped[0].reason);
  showPhoto(file, answer.photos[0]);
  return answer.photos[0].faces.length;
}

function photoCard(file) {
  const card = document.createElement("article");
  card.className = "photo";
  const title = document.createElement("h3");
  title.textContent = file.name;
  card.append(title);
  $("#results").append(card);
  return card;
}

function showFailure(file, err) {
  const card = photoCard(file);
  if (err.status === 401) {
    card.append(keyPrompt());
    return;
  }
  const p = document.createElement("p");
  p.className = "error";
  p.textContent = err.message;
  card.append(p);
}

function label(face) {
  if (face.name === null) return "unknown";
  return face.score !== undefined ? `${face.name} (${Math.round(face.score * 100)}%)` : face.name;
}

function showPhoto(file, answer) {
  const card = photoCard(file);
  const frame = document.createElement("div");
  frame.className = "frame";
  const img = document.createElement("img");
  img.src = URL.createObjectURL(file);
  const described = answer.faces.map((f, i) => `face ${i + 1}: ${label(f)}`).join("; ");
  img.alt = `${file.name}: ${answer.faces.length ? described : "no face found"}`;
  frame.append(img);
  img.addEventListener("load", () => {
    answer.faces.forEach((face, i) => frame.append(boxFor(face, i, img.naturalWidth, img.naturalHeight)));
  });
  const faces = document.createElement("ol");
  faces.className = "faces";
  if (!answer.faces.length) {
    const li = document.createElement("li");
    li.textContent = "No face found.";
    faces.append(li);
  }
  answer.faces.forEach((face, i) => faces.append(faceItem(face, i, file)));
  card.append(frame, faces);
}

// Each box carries its face's number, as the list under the photo numbers it.
function boxFor(face, i, w, h) {
  const [x0, y0, x1, y1] = face.box;
  const box = document.createElement("div");
  box.className = "box" + (face.name === null ? " unknown" : "");
  Object.assign(box.style, {
    left: `${(100 * x0) / w}%`, top: `${(100 * y0) / h}%`,
    width: `${(100 * (x1 - x0)) / w}%`, height: `${(100 * (y1 - y0)) / h}%`,
  });
  box.setAttribute("aria-hidden", "true");
  box.dataset.face = String(i + 1);
  const number = document.createElement("span");
  number.className = "num";
  number.textContent = String(i + 1);
  const tag = document.createElement("span");
  tag.className = "tag";
  tag.textContent = label(face);
  box.append(number, tag);
  return box;
}

function faceItem(face, i, file) {
  const li = document.createElement("li");
  li.dataset.face = String(i + 1);
  const who = document.createElement("span");
  who.className = "who " + (face.name === null ? "unknown" : "known");
  who.textContent = `Face ${i + 1}: ${label(face)}`;
  li.append(who);
  if (face.name === null) li.append(nameForm(face, i, file, li));
  return li;
}

function nameForm(face, i, file, li) {
  const form = document.createElement("form");
  const id = `name-${Math.random().toString(36).slice(2)}`;
  const lab = document.createElement("label");
  lab.htmlFor = id;
  lab.textContent = "Name this face";
  const input = document.createElement("input");
  input.type = "text";
  input.id = id;
  input.required = true;
  const button = document.createElement("button");
  button.type = "submit";
  button.textContent = "Enrol";
  form.append(lab, input, button);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const name = input.value.trim();
    if (!name) return;
    const body = new FormData();
    body.append("photos", file, file.name);
    body.append("box", face.box.join(","));
    try {
      const res = await api("POST", `${person(name)}/photos`, body);
      if (!res.added && res.problems.length) throw new Error(res.problems[0].reason);
      say(`Enrolled face ${i + 1} as ${res.name}.`);
      const done = document.createElement("span");
      done.className = "who known";
      done.textContent = ` → enrolled as ${res.name}`;
      form.replaceWith(done);
      loadPeople();
    } catch (err) {
      say(`Could not enrol: ${err.message}`, true);
    }
  });
  return form;
}

// ----- people -------------------------------------------------------------------------------------
async function loadPeople() {
  const list = $("#people");
  let people;
  try {
    people = (await api("GET", "/v1/people")).people;
  } catch (err) {
    list.replaceChildren();
    $("#people-count").textContent = "";
    const li = document.createElement("li");
    if (err.status === 401) {
      li.className = "prompt";
      li.append(keyPrompt());
    } else {
      li.className = "error";
      li.textContent = err.message;
    }
    list.append(li);
    return;
  }
  $("#people-count").textContent = `(${people.length})`;
  list.replaceChildren(...people.map(personItem));
}

function personItem(p) {
  const li = document.createElement("li");
  const thumb = document.createElement("img");
  thumb.alt = `face of ${p.name}`;
  thumb.className = "noimg";
  api("GET", `${person(p.name)}/thumbnail`)
    .then((blob) => { thumb.src = URL.createObjectURL(blob); })
    .catch(() => { thumb.alt = ""; });
  const name = document.createElement("span");
  name.className = "person-name";
  name.textContent = p.name;
  const count = document.createElement("span");
  count.className = "count";
  count.textContent = `${p.photos} photo${p.photos === 1 ? "" : "s"}`;
  const rename = document.createElement("button");
  rename.className = "secondary";
  rename.textContent = "Rename";
  rename.setAttribute("aria-label", `Rename ${p.name}`);
  rename.addEventListener("click", () => li.append(renameForm(p, li, rename)));
  const remove = document.createElement("button");
  remove.className = "danger";
  remove.textContent = "Remove";
  remove.setAttribute("aria-label", `Remove ${p.name}`);
  remove.addEventListener("click", async () => {
    if (!confirm(`Remove ${p.name} and their ${p.photos} photo(s)?`)) return;
    try {
      await api("DELETE", person(p.name));
      say(`Removed ${p.name}.`);
      loadPeople();
    } catch (err) {
      say(`Could not remove: ${err.message}`, true);
    }
  });
  const about = document.createElement("span");
  about.className = "about";
  about.append(name, count);
  const actions = document.createElement("span");
  actions.className = "actions";
  actions.append(rename, remove);
  li.append(thumb, about, actions);
  return li;
}

function renameForm(p, li, opener) {
  opener.disabled = true;
  const form = document.createElement("form");
  const id = `rename-${Math.random().toString(36).slice(2)}`;
  const lab = document.createElement("label");
  lab.htmlFor = id;
  lab.textContent = `New name for ${p.name}`;
  const input = document.createElement("input");
  input.type = "text";
  input.id = id;
  input.value = p.name;
  const save = document.createElement("button");
  save.type = "submit";
  save.textContent = "Save";
  form.append(lab, input, save);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const res = await api("PATCH", person(p.name), { name: input.value.trim() });
      say(`Renamed ${p.name} to ${res.name}.`);
      loadPeople();
    } catch (err) {
      say(`Could not rename: ${err.message}`, true);
    }
  });
  setTimeout(() => input.focus(), 0);
  return form;
}

loadPeople();
