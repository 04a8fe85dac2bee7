// What a person sees of a job document (API.md, "The job document"): the assessment first, then each model.
// `reference` and `assessment` are newer fields: shown when the server sends them, replaced by the diagnosis
// model's answer when it does not.

export const DIAGNOSES = {
  akiec: "Actinic keratosis / intraepithelial carcinoma",
  bcc: "Basal cell carcinoma",
  bkl: "Benign keratosis",
  df: "Dermatofibroma",
  mel: "Melanoma",
  nv: "Melanocytic nevus, a mole",
  vasc: "Vascular lesion",
};
export const MALIGNANT = new Set(["mel", "bcc", "akiec"]);

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "testid") node.dataset.testid = value;
    else if (name === "class") node.className = value;
    else node.setAttribute(name, value);
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

const percent = (p) => `${Math.round(p * 100)}%`;
const diagnosisName = (label) => (DIAGNOSES[label] ? `${DIAGNOSES[label]} (${label})` : label);
const groupOf = (label) => (MALIGNANT.has(label) ? "malignant" : "benign");
const pill = (text, kind) => el("span", { class: `pill ${kind}` }, text);

function bars(scores) {
  const rows = Object.entries(scores).sort(([, a], [, b]) => b - a);
  const grid = el("div", { class: "bars", role: "list", "aria-label": "Probability of each diagnosis" });
  rows.forEach(([label, p], index) => {
    const bar = el("div", { class: `bar ${groupOf(label)}` }, el("span", { style: `width:${(p * 100).toFixed(1)}%` }));
    const name = el("span", { class: index === 0 ? "top" : "" }, diagnosisName(label));
    grid.append(name, bar, el("span", { class: "num" }, percent(p)));
  });
  return grid;
}

function assessmentBlock(result) {
  const a = result.assessment;
  const combined = Boolean(a && a.label);
  const label = combined ? a.label : result.diagnosis.label;
  const confidence = combined ? a.confidence : result.diagnosis.confidence;
  const malignant = combined ? a.malignant
    : Object.entries(result.diagnosis.scores).reduce((sum, [k, p]) => sum + (MALIGNANT.has(k) ? p : 0), 0);
  return [
    el("h3", {}, combined ? "Assessment (the models combined)" : "Assessment"),
    el("p", { class: "headline", testid: "assessment-label" }, diagnosisName(label)),
    el("p", { class: "sub" }, `confidence ${percent(confidence)} · probability that it is malignant `,
      pill(percent(malignant), malignant >= 0.5 ? "malignant" : "benign")),
    ...(combined ? [] : [el("p", { class: "hint" }, "This server sends no combined assessment: shown is the diagnosis model's answer.")]),
    el("p", { testid: "conclusive" }, result.conclusive
      ? pill("Conclusive", "neutral") : pill("Inconclusive", "malignant"), " ",
    result.conclusive ? "the models are confident and agree on benign vs malignant."
      : "the models are unsure or disagree: this result says little. Ask a dermatologist."),
  ];
}

function modelsBlock(result) {
  const { binary, check, reference } = result;
  const rows = [
    el("dt", {}, "Benign or malignant"),
    el("dd", {}, el("span", { testid: "binary-label" }, pill(binary.label, binary.label)), ` ${percent(binary.confidence)}`,
      el("span", { class: "hint" }, ` (${binary.model})`)),
    el("dt", {}, "Check (ResNet50)"),
    el("dd", { testid: "check" }, `${diagnosisName(check.label)} ${percent(check.confidence)} — `,
      check.agrees ? pill("agrees", "benign") : pill("disagrees", "malignant"),
      ` with the benign/malignant model`),
  ];
  if (reference && reference.label) {
    rows.push(el("dt", {}, "Reference model"),
      el("dd", { testid: "reference" }, `${diagnosisName(reference.label)} ${percent(reference.confidence)}`,
        el("span", { class: "hint" }, ` (${reference.model})`)));
  }
  return [el("h3", {}, "Each model"), el("dl", { class: "models" }, ...rows)];
}

/** The nodes of the result panel for a job document (empty while the job is not finished). */
export function renderResult(job) {
  if (job.status === "done" && job.result) {
    const { result } = job;
    return [
      ...assessmentBlock(result),
      el("h3", {}, "Diagnosis model: the 7 classes"),
      el("p", { class: "sub" }, "Most likely: ",
        el("strong", { testid: "diagnosis-label" }, diagnosisName(result.diagnosis.label)),
        ` ${percent(result.diagnosis.confidence)}`),
      bars(result.diagnosis.scores),
      ...modelsBlock(result),
    ];
  }
  if (job.status === "rejected" && job.rejection) {
    return [el("h3", {}, "The photo was not analysed"),
      el("p", { class: "advice", testid: "advice" }, job.rejection.message),
      el("p", { class: "hint" }, "Choose or take a new photo, then press Analyse photo.")];
  }
  if (job.status === "failed") {
    const message = job.error && job.error.message ? job.error.message : "The analysis failed.";
    return [el("h3", {}, "The analysis failed"), el("p", { class: "advice", testid: "advice" }, message)];
  }
  return [];
}

/** A sentence a person can act on, for a non-2xx answer of upload or status. */
export function errorMessage(status, answer, retryAfter) {
  const message = answer && answer.error && answer.error.message;
  const wait = retryAfter ? ` (wait ${retryAfter} s)` : "";
  if (status === 401) return `${message || "Your sign-in is no longer valid."} Sign out and sign in again.`;
  if (message) return `${message}${wait}`;
  return `The service answered ${status}; try again in a moment${wait}.`;
}
