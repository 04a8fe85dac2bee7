// The reference web client: sign in with Firebase Auth, upload a photo to the upload function with the ID token
// and an Idempotency-Key, then listen to jobs/{jobId} in Firestore until the analysis is done.
import { initializeApp } from "firebase/app";
import {
  connectAuthEmulator, createUserWithEmailAndPassword, getAuth, onAuthStateChanged, signInWithEmailAndPassword,
  signOut,
} from "firebase/auth";
import { connectFirestoreEmulator, doc, getFirestore, onSnapshot } from "firebase/firestore";
import { errorMessage, renderResult } from "./render.js";

// Where the backend is: config.json beside the page (written by `make up`), else the local stack's defaults.
const DEFAULTS = {
  projectId: "demo-skin",
  apiKey: "fake",
  authEmulator: "http://127.0.0.1:9099",
  firestoreEmulator: "127.0.0.1:8080",
  uploadUrl: "http://127.0.0.1:8091/",
  statusUrl: "http://127.0.0.1:8093/",
};
const TERMINAL = new Set(["done", "rejected", "failed"]);
const $ = (id) => document.getElementById(id);

async function loadConfig() {
  try {
    const reply = await fetch("config.json", { cache: "no-store" });
    if (reply.ok) return { ...DEFAULTS, ...(await reply.json()) };
  } catch {
    // no config.json: the defaults of the local stack
  }
  return DEFAULTS;
}

function showError(message) {
  $("error").textContent = message || "";
  $("error").hidden = !message;
}

function setStatus(status, note = "") {
  const element = $("status");
  element.textContent = status;
  element.className = `status ${status}`;
  $("status-note").textContent = note;
}

const config = await loadConfig();
const app = initializeApp({ projectId: config.projectId, apiKey: config.apiKey, authDomain: `${config.projectId}.firebaseapp.com` });
const auth = getAuth(app);
const db = getFirestore(app);
if (config.authEmulator) connectAuthEmulator(auth, config.authEmulator, { disableWarnings: true });
if (config.firestoreEmulator) {
  const [host, port] = config.firestoreEmulator.split(":");
  connectFirestoreEmulator(db, host, Number(port));
}

// One job on screen at a time: its id, its listener, the time of its 202 (to show how long it took).
const job = { id: null, unsubscribe: null, acceptedAt: 0 };
// The chosen photo and its Idempotency-Key (one per chosen photo), and the job its upload gave: a job that ended
// `failed` is started again by POSTing the same photo with the same key (API.md: 202, same jobId).
const photo = { file: null, key: null, jobId: null, previewUrl: null };

function stopListening() {
  if (job.unsubscribe) job.unsubscribe();
  job.unsubscribe = null;
}

function closeJob() {
  stopListening();
  Object.assign(job, { id: null, acceptedAt: 0 });
  $("job-panel").hidden = true;
  $("result").hidden = true;
  $("result").replaceChildren();
  $("delete").hidden = true;
  $("retry").hidden = true;
}

function forgetJobLink() { // the address no longer names a job that is gone
  history.replaceState(null, "", location.pathname + location.search);
}

function showInfo(message) {
  $("info").textContent = message || "";
  $("info").hidden = !message;
}

function showPreview(file) {
  if (photo.previewUrl) URL.revokeObjectURL(photo.previewUrl); // an object URL holds its file until revoked
  photo.previewUrl = file ? URL.createObjectURL(file) : null;
  if (photo.previewUrl) $("preview").src = photo.previewUrl;
  else $("preview").removeAttribute("src");
  $("preview").hidden = !file;
}

// --- 1. sign in ----------------------------------------------------------------------------------------------
$("signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError("");
  const email = $("email").value.trim();
  const password = $("password").value;
  $("sign-in").disabled = true;
  try {
    try {
      await signInWithEmailAndPassword(auth, email, password);
    } catch (error) {
      if (error.code !== "auth/user-not-found" && error.code !== "auth/invalid-credential") throw error;
      try {
        await createUserWithEmailAndPassword(auth, email, password); // a new email: create the account
      } catch (createError) {
        throw createError.code === "auth/email-already-in-use" ? error : createError;
      }
    }
  } catch (error) {
    showError(authMessage(error));
  } finally {
    $("sign-in").disabled = false;
  }
});

$("sign-out").addEventListener("click", async () => {
  // Nothing of this user stays for the next one in this tab: the job link, the photo, the messages.
  history.replaceState(null, "", location.pathname + location.search);
  closeJob();
  showPreview(null);
  Object.assign(photo, { file: null, key: null, jobId: null });
  $("photo").value = "";
  showError("");
  showInfo("");
  await signOut(auth);
});

function authMessage(error) {
  switch (error.code) {
    case "auth/invalid-credential":
    case "auth/wrong-password":
      return "Wrong email or password; check them and sign in again.";
    case "auth/invalid-email":
      return "That is not a valid email address.";
    case "auth/weak-password":
      return "Choose a password of at least 6 characters.";
    case "auth/user-disabled":
      return "This account is disabled; contact the app's support.";
    case "auth/network-request-failed":
      return "The sign-in service cannot be reached; check the connection (locally: is `make up` running?).";
    default:
      return `Sign-in failed (${error.code || error.message}); try again.`;
  }
}

onAuthStateChanged(auth, (user) => {
  $("signin-form").hidden = Boolean(user);
  $("signed-in").hidden = !user;
  $("who").textContent = user ? user.email || user.uid : "";
  $("photo").disabled = !user;
  $("upload").disabled = !user || !$("photo").files.length;
  if (!user) {
    closeJob();
    return;
  }
  const shared = new URLSearchParams(location.hash.slice(1)).get("job");
  if (shared && shared !== job.id) watch(shared, false); // a job link: show it if it is this user's
});

// --- 2. upload -----------------------------------------------------------------------------------------------
$("photo").addEventListener("change", () => {
  // one key per chosen photo: pressing upload again (or Try again after `failed`) never makes a second job
  Object.assign(photo, { file: $("photo").files[0] || null, key: crypto.randomUUID(), jobId: null });
  $("retry").hidden = true;
  $("upload").disabled = !auth.currentUser || !$("photo").files.length;
  showError("");
});

$("upload").addEventListener("click", () => upload());
$("retry").addEventListener("click", () => upload());

async function upload() {
  const { file, key } = photo;
  const user = auth.currentUser;
  if (!file || !user) return;
  showError("");
  showInfo("");
  closeJob();
  $("upload").disabled = true;
  const body = new FormData();
  body.append("image", file, file.name || "photo");
  let reply;
  try {
    reply = await fetch(config.uploadUrl, {
      method: "POST",
      headers: { Authorization: `Bearer ${await user.getIdToken()}`, "Idempotency-Key": key },
      body,
    });
  } catch {
    showError("The upload service cannot be reached; check the connection and press Analyse photo again.");
    $("upload").disabled = false;
    return;
  }
  $("upload").disabled = false;
  const answer = await reply.json().catch(() => ({}));
  if (reply.status !== 202 && reply.status !== 200) {
    showError(errorMessage(reply.status, answer, reply.headers.get("Retry-After")));
    return;
  }
  if (photo.key === key) photo.jobId = answer.jobId;
  showPreview(file);
  history.replaceState(null, "", `#job=${answer.jobId}`);
  watch(answer.jobId, true, answer.status);
}

// --- 3. the job, live --------------------------------------------------------------------------------------
function watch(jobId, fromUpload, initialStatus = "queued") {
  closeJob();
  showInfo("");
  job.id = jobId;
  job.acceptedAt = fromUpload ? performance.now() : 0;
  if (!fromUpload) showPreview(null);
  $("job-panel").hidden = false;
  $("job-panel").dataset.jobId = jobId;
  delete $("job-panel").dataset.doneAfterMs;
  setStatus(initialStatus);
  // Attached after the 202: the rules refuse a listener on a job that does not exist yet, or is not yours.
  job.unsubscribe = onSnapshot(doc(db, "jobs", jobId), (snapshot) => {
    if (!snapshot.exists()) {
      closeJob();
      forgetJobLink();
      showError("This job no longer exists: it was deleted, or it expired.");
      return;
    }
    show(snapshot.data());
  }, (error) => {
    closeJob();
    showError(error.code === "permission-denied"
      ? "This job cannot be shown: it belongs to another account, or it does not exist. Sign in with the account that uploaded it."
      : `The job cannot be followed (${error.code}); reload the page to try again.`);
  });
}

function show(data) {
  let note = "";
  if (data.status === "done" && job.acceptedAt) {
    const ms = Math.round(performance.now() - job.acceptedAt);
    $("job-panel").dataset.doneAfterMs ??= String(ms);
    note = `analysed ${(Number($("job-panel").dataset.doneAfterMs) / 1000).toFixed(1)} s after the upload`;
  } else if (!TERMINAL.has(data.status)) {
    note = data.status === "queued" ? "waiting for the analysis to start…" : "analysing the photo…";
  }
  setStatus(data.status, note);
  $("delete").hidden = false;
  // Try again: the same photo with the same Idempotency-Key starts a failed job again (only for this tab's upload).
  $("retry").hidden = !(data.status === "failed" && photo.file && photo.jobId === job.id);
  // A final status does not change again (API.md): stop listening, as web/README.md tells app developers to.
  if (TERMINAL.has(data.status)) stopListening();
  const result = $("result");
  result.replaceChildren(...renderResult(data));
  result.hidden = !TERMINAL.has(data.status);
}

// --- Delete ----------------------------------------------------------------------------------------------------
$("delete").addEventListener("click", async () => {
  const user = auth.currentUser;
  const jobId = job.id;
  if (!user || !jobId) return;
  $("delete").disabled = true;
  stopListening(); // the document is about to go: stop listening first
  let reply;
  try {
    reply = await fetch(`${config.statusUrl.replace(/\/$/, "")}/${encodeURIComponent(jobId)}`, {
      method: "DELETE",
      headers: { Authorization: `Bearer ${await user.getIdToken()}` },
    });
  } catch {
    reply = null;
  }
  $("delete").disabled = false;
  if (!reply || reply.status !== 204) {
    const answer = reply ? await reply.json().catch(() => ({})) : {};
    watch(jobId, false);
    showError(reply ? errorMessage(reply.status, answer, reply.headers.get("Retry-After"))
      : "The service cannot be reached; the job was not deleted. Try again.");
    return;
  }
  closeJob(); // hides the status too: `deleted` is no job status (API.md)
  setStatus("");
  forgetJobLink();
  showError("");
  showPreview(null);
  if (photo.jobId === jobId) photo.jobId = null;
  showInfo("Deleted: the photo and its result were erased from the service.");
});

// Ready: the sign-in button stays disabled until here, so that no click submits the form before its handler exists.
$("sign-in").disabled = false;
