#!/usr/bin/env bash
# Deploy the whole backend to one Google Cloud project: APIs, Firestore, the bucket, service accounts and their
# roles, the Cloud Tasks queue, the infer image and service, the upload and status functions, the sweep and its
# Cloud Scheduler job, rules and TTLs.
#
#   bash deploy/deploy.sh --project P [--region R] [--dry-run]
#
# Settings: deploy/config.env, overridden by environment variables of the same name. Safe to run again: what
# exists is updated, not duplicated. --dry-run prints every gcloud/curl command, one per line, and calls none.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CONFIG="$REPO/deploy/config.env"
DRY_RUN=0

while (($#)); do
  case $1 in
    --project) export PROJECT=$2; shift 2 ;;
    --project=*) export PROJECT=${1#*=}; shift ;;
    --region) export REGION=$2; shift 2 ;;
    --region=*) export REGION=${1#*=}; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

# config.env, except what the environment (or a flag) already sets.
while IFS= read -r line; do
  [[ $line =~ ^([A-Z_][A-Z0-9_]*)= ]] || continue
  [[ -v ${BASH_REMATCH[1]} ]] || eval "export $line"
done <"$CONFIG"
[[ -n $PROJECT ]] || { echo "no project: pass --project or set PROJECT" >&2; exit 2; }
cd "$REPO"

# --- helpers ---------------------------------------------------------------------------------------------------
TOKEN=""  # the access token for the Rules API; never printed

quote() {  # the command as one shell line, quoting only what needs it, the token masked
  local out=() arg
  for arg in "$@"; do
    if [[ $arg =~ ^[A-Za-z0-9_./:=@,+%-]+$ ]]; then out+=("$arg"); else out+=("'${arg//\'/\'\\\'\'}'"); fi
  done
  local line="${out[*]}"
  echo "${line//"$TOKEN"/\$TOKEN}"
}

resolve() {  # COMMAND...: sets CMD; "gc ARGS" is gcloud ARGS for this project, without prompts
  if [[ $1 == gc ]]; then CMD=(gcloud "${@:2}" --project="$PROJECT" --quiet); else CMD=("$@"); fi
}

run() {  # print the command; run it unless this is a dry run
  resolve "$@"
  if ((DRY_RUN)); then quote "${CMD[@]}"; else echo "+ $(quote "${CMD[@]}")" >&2; "${CMD[@]}"; fi
}

value() {  # VAR PLACEHOLDER COMMAND...: VAR=the command's output (a dry run prints it and uses PLACEHOLDER)
  local var=$1 placeholder=$2; shift 2
  resolve "$@"
  if ((DRY_RUN)); then echo "$var=\$($(quote "${CMD[@]}"))"; printf -v "$var" '%s' "$placeholder"; return; fi
  local out  # a failure inside "$(...)" would not stop set -e: check it, and refuse an empty answer too
  out=$("${CMD[@]}") || { echo "deploy: $var: $(quote "${CMD[@]}") failed" >&2; exit 1; }
  [[ -n $out ]] || { echo "deploy: $var: $(quote "${CMD[@]}") printed nothing" >&2; exit 1; }
  printf -v "$var" '%s' "$out"
}

exists() {  # COMMAND...: whether a describe/get succeeds (a dry run prints it and takes the thing as missing)
  resolve "$@"
  if ((DRY_RUN)); then quote "${CMD[@]}"; return 1; fi
  "${CMD[@]}" >/dev/null 2>&1
}

retry() {  # COMMAND...: IAM is eventually consistent; a service account just created may not be bindable yet
  local attempt
  for attempt in 1 2 3 4 5; do "$@" && return 0; echo "retrying in 10 s ($attempt/5)" >&2; sleep 10; done
  return 1
}

rules_request() {  # METHOD PATH [BODY_FILE]: sets REQUEST to the curl command for the Firebase Rules REST API
  REQUEST=(curl -sS --fail-with-body -X "$1" "https://firebaserules.googleapis.com/v1/$2"
           -H "Authorization: Bearer $TOKEN" -H "x-goog-user-project: $PROJECT" -H "Content-Type: application/json")
  [[ -z ${3:-} ]] || REQUEST+=(--data-binary "@$3")
}

env_vars() {  # KEY=VALUE...: one --set-env-vars value, ';'-delimited so values may hold commas
  local IFS=';'
  echo "--set-env-vars=^;^$*"
}

# --- derived settings --------------------------------------------------------------------------------------------
sa_email() { echo "$1@$PROJECT.iam.gserviceaccount.com"; }
UPLOAD_EMAIL=$(sa_email "$UPLOAD_SA")
STATUS_EMAIL=$(sa_email "$STATUS_SA")
INFER_EMAIL=$(sa_email "$INFER_SA")
INVOKER_EMAIL=$(sa_email "$TASKS_INVOKER_SA")
SWEEP_EMAIL=$(sa_email "$SWEEP_SA")
SCHEDULER_EMAIL=$(sa_email "$SCHEDULER_SA")
QUEUE_PATH="projects/$PROJECT/locations/$REGION/queues/$QUEUE"
IMAGE="$REGION-docker.pkg.dev/$PROJECT/$ARTIFACT_REPO/infer:${IMAGE_TAG:-$(date -u +%Y%m%d-%H%M%S)}"
COMMON_ENV=("GOOGLE_CLOUD_PROJECT=$PROJECT" "STORAGE_BUCKET=$BUCKET" "TASKS_QUEUE=$QUEUE_PATH"
            "MAX_ATTEMPTS=$MAX_ATTEMPTS" "LEASE_SECONDS=$LEASE_SECONDS" "STALE_AFTER_SECONDS=$STALE_AFTER_SECONDS"
            "JOB_TTL_DAYS=$JOB_TTL_DAYS" "LOG_LEVEL=$LOG_LEVEL")
set_only() {  # NAME...: NAME=value for each setting given a value; an empty one keeps the service's default
  local name
  for name; do [[ -z ${!name} ]] || echo "$name=${!name}"; done
}
mapfile -t IMAGE_ENV < <(set_only MIN_IMAGE_SIDE MAX_IMAGE_PIXELS)
mapfile -t ANALYSIS_ENV < <(set_only BLUR_THRESHOLD DARK_THRESHOLD BRIGHT_THRESHOLD GATE_THRESHOLD CONF_THRESHOLD \
  MODEL_THREADS)
mkdir -p "$WORK_DIR"

# --- APIs, Firestore, bucket -------------------------------------------------------------------------------------
run gc services enable run.googleapis.com cloudfunctions.googleapis.com cloudbuild.googleapis.com \
  artifactregistry.googleapis.com cloudtasks.googleapis.com firestore.googleapis.com storage.googleapis.com \
  iam.googleapis.com logging.googleapis.com firebaserules.googleapis.com cloudscheduler.googleapis.com \
  identitytoolkit.googleapis.com

if ! exists gc firestore databases describe --database='(default)'; then
  run gc firestore databases create --database='(default)' --location="$FIRESTORE_LOCATION" --type=firestore-native
fi
for group in jobs private quotas; do  # Firestore deletes a document once its expireAt has passed (private: worker state)
  run gc firestore fields ttls update expireAt --collection-group="$group" --enable-ttl --async
done

printf '{"lifecycle": {"rule": [{"action": {"type": "Delete"}, "condition": {"age": %d, "matchesPrefix": ["uploads/"]}}]}}\n' \
  "$JOB_TTL_DAYS" >"$WORK_DIR/lifecycle.json"
# Soft delete off: a photo erased by DELETE (or by the lifecycle rule) cannot be restored for 7 days afterwards.
if ! exists gc storage buckets describe "gs://$BUCKET"; then
  run gc storage buckets create "gs://$BUCKET" --location="$REGION" --uniform-bucket-level-access \
    --public-access-prevention --soft-delete-duration=0
fi
run gc storage buckets update "gs://$BUCKET" --uniform-bucket-level-access --public-access-prevention \
  --soft-delete-duration=0 --lifecycle-file="$WORK_DIR/lifecycle.json"
# A new bucket lets the project's viewers list its objects and, with uniform access, read them (the convenience
# bindings legacyBucketReader and legacyObjectReader): not for health photos. Owners and editors keep theirs.
# (A dry run takes the bucket as new, with those bindings.)
value BUCKET_POLICY '{"bindings": [{"role": "roles/storage.legacyBucketReader", "members": ["projectViewer:'"$PROJECT"'"]}, {"role": "roles/storage.legacyObjectReader", "members": ["projectViewer:'"$PROJECT"'"]}]}' \
  gc storage buckets get-iam-policy "gs://$BUCKET" --format=json
VIEWER_ROLES=$(python3 deploy/viewer_roles.py "$BUCKET_POLICY" "$PROJECT") || {
  echo "deploy: the bucket's IAM policy did not parse" >&2; exit 1; }
for role in $VIEWER_ROLES; do
  run gc storage buckets remove-iam-policy-binding "gs://$BUCKET" --member="projectViewer:$PROJECT" --role="$role" --all
done

# --- security rules: a new ruleset through the Firebase Rules REST API, then the release points at it --------------
deploy_rules() {  # RULES_FILE RELEASE_NAME
  local name release="projects/$PROJECT/releases/$2"
  local ruleset_body="$WORK_DIR/${1##*/}.ruleset.json" release_body="$WORK_DIR/${1##*/}.release.json"
  python3 -c 'import json, pathlib, sys; path = pathlib.Path(sys.argv[1])
print(json.dumps({"source": {"files": [{"name": path.name, "content": path.read_text()}]}}))' "$1" >"$ruleset_body"
  rules_request POST "projects/$PROJECT/rulesets" "$ruleset_body"
  value RULESET '{"name": "projects/'"$PROJECT"'/rulesets/PLACEHOLDER"}' "${REQUEST[@]}"
  name=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["name"])' "$RULESET")
  rules_request GET "$release"
  if exists "${REQUEST[@]}"; then
    printf '{"release": {"name": "%s", "rulesetName": "%s"}}\n' "$release" "$name" >"$release_body"
    rules_request PATCH "$release" "$release_body"
  else
    printf '{"name": "%s", "rulesetName": "%s"}\n' "$release" "$name" >"$release_body"
    rules_request POST "projects/$PROJECT/releases" "$release_body"
  fi
  run "${REQUEST[@]}"
}
value TOKEN DRY-RUN-TOKEN gcloud auth print-access-token
deploy_rules deploy/firestore.rules cloud.firestore
deploy_rules deploy/storage.rules "firebase.storage/$BUCKET"

# --- service accounts and their project/bucket roles ---------------------------------------------------------------
for sa in "$UPLOAD_SA" "$STATUS_SA" "$INFER_SA" "$TASKS_INVOKER_SA" "$SWEEP_SA" "$SCHEDULER_SA"; do
  if ! exists gc iam service-accounts describe "$(sa_email "$sa")"; then
    run gc iam service-accounts create "$sa" --display-name="skin-lesion $sa"
  fi
done
for email in "$UPLOAD_EMAIL" "$STATUS_EMAIL" "$INFER_EMAIL" "$SWEEP_EMAIL"; do
  retry run gc projects add-iam-policy-binding "$PROJECT" --member="serviceAccount:$email" \
    --role=roles/datastore.user --condition=None
done
# upload and status verify ID tokens with check_revoked=True: a look-up of the user in Firebase Auth (read only).
for email in "$UPLOAD_EMAIL" "$STATUS_EMAIL"; do
  retry run gc projects add-iam-policy-binding "$PROJECT" --member="serviceAccount:$email" \
    --role=roles/firebaseauth.viewer --condition=None
done
# On the bucket, each function gets a custom role with exactly the object permissions it uses.
custom_role() {  # ID TITLE PERMISSIONS: a project custom role, created or brought up to date
  local verb=update
  exists gc iam roles describe "$1" || verb=create
  run gc iam roles "$verb" "$1" --title="$2" --permissions="$3" --stage=GA
}
custom_role "$PHOTO_CREATOR_ROLE" "Skin photos: create, and delete to undo a failed upload" \
  storage.objects.create,storage.objects.delete
custom_role "$PHOTO_READER_ROLE" "Skin photos: read" storage.objects.get
custom_role "$PHOTO_ERASER_ROLE" "Skin photos: read and delete" storage.objects.get,storage.objects.delete
for binding in "$UPLOAD_EMAIL=$PHOTO_CREATOR_ROLE" "$INFER_EMAIL=$PHOTO_READER_ROLE" "$STATUS_EMAIL=$PHOTO_ERASER_ROLE"; do
  retry run gc storage buckets add-iam-policy-binding "gs://$BUCKET" --member="serviceAccount:${binding%=*}" \
    --role="projects/$PROJECT/roles/${binding#*=}"
done
# upload attaches the invoker's OIDC token to each task, so it may act as that one account only.
retry run gc iam service-accounts add-iam-policy-binding "$INVOKER_EMAIL" --member="serviceAccount:$UPLOAD_EMAIL" \
  --role=roles/iam.serviceAccountUser

# --- the Cloud Tasks queue -------------------------------------------------------------------------------------------
queue_verb=update
exists gc tasks queues describe "$QUEUE" --location="$REGION" || queue_verb=create
run gc tasks queues "$queue_verb" "$QUEUE" --location="$REGION" \
  --max-attempts="$MAX_ATTEMPTS" --max-retry-duration="$QUEUE_MAX_RETRY_DURATION" \
  --min-backoff="$QUEUE_MIN_BACKOFF" --max-backoff="$QUEUE_MAX_BACKOFF" \
  --max-doublings="$QUEUE_MAX_DOUBLINGS" --max-dispatches-per-second="$QUEUE_MAX_DISPATCHES_PER_SECOND" \
  --max-concurrent-dispatches="$((INFER_MAX_INSTANCES * INFER_CONCURRENCY))"
retry run gc tasks queues add-iam-policy-binding "$QUEUE" --location="$REGION" \
  --member="serviceAccount:$UPLOAD_EMAIL" --role=roles/cloudtasks.enqueuer

# --- infer: image and private Cloud Run service ------------------------------------------------------------------------
run python3 deploy/stage.py --out "$STAGE_DIR"
if ! exists gc artifacts repositories describe "$ARTIFACT_REPO" --location="$REGION"; then
  run gc artifacts repositories create "$ARTIFACT_REPO" --location="$REGION" --repository-format=docker
fi
run gc builds submit "$STAGE_DIR/infer" --tag="$IMAGE"
run gc run deploy infer --image="$IMAGE" --region="$REGION" --no-allow-unauthenticated \
  --concurrency="$INFER_CONCURRENCY" --cpu="$INFER_CPU" --memory="$INFER_MEMORY" --cpu-boost \
  --min-instances="$INFER_MIN_INSTANCES" --max-instances="$INFER_MAX_INSTANCES" --timeout="$INFER_TIMEOUT" \
  --service-account="$INFER_EMAIL" "$(env_vars "${COMMON_ENV[@]}" "${IMAGE_ENV[@]}" "${ANALYSIS_ENV[@]}")"
retry run gc run services add-iam-policy-binding infer --region="$REGION" \
  --member="serviceAccount:$INVOKER_EMAIL" --role=roles/run.invoker
value INFER_URL "https://infer-PLACEHOLDER.a.run.app" \
  gc run services describe infer --region="$REGION" --format='value(status.url)'

# --- status and upload: public 2nd-gen functions that verify Firebase ID tokens themselves --------------------------------
deploy_function() {  # NAME SERVICE_ACCOUNT MEMORY ACCESS(--allow-unauthenticated|--no-allow-unauthenticated) ENV...
  local name=$1 account=$2 memory=$3 access=$4; shift 4
  run gc functions deploy "$name" --gen2 --runtime=python312 --region="$REGION" --trigger-http \
    --entry-point="$name" --source="$STAGE_DIR/$name" "$access" --service-account="$account" \
    --memory="$memory" --max-instances="$FUNCTION_MAX_INSTANCES" \
    "$(env_vars "${COMMON_ENV[@]}" "ALLOWED_ORIGINS=$ALLOWED_ORIGINS" "APP_CHECK_REQUIRED=$APP_CHECK_REQUIRED" "$@")"
}
function_url() {  # VAR NAME
  value "$1" "https://$2-PLACEHOLDER.a.run.app" \
    gc functions describe "$2" --gen2 --region="$REGION" --format='value(serviceConfig.uri)'
}
deploy_function status "$STATUS_EMAIL" "$STATUS_MEMORY" --allow-unauthenticated
function_url STATUS_URL status
deploy_function upload "$UPLOAD_EMAIL" "$UPLOAD_MEMORY" --allow-unauthenticated "INFER_URL=$INFER_URL" \
  "TASKS_SERVICE_ACCOUNT=$INVOKER_EMAIL" "STATUS_URL=$STATUS_URL/" \
  "UPLOADS_PER_USER_PER_HOUR=$UPLOADS_PER_USER_PER_HOUR" "MAX_UPLOAD_BYTES=$MAX_UPLOAD_BYTES" "${IMAGE_ENV[@]}"
function_url UPLOAD_URL upload

# --- the sweep: a private function that Cloud Scheduler calls with its own OIDC identity --------------------------------
# It ends as `failed` every job no delivery will finish, so the owner's listener sees it end without calling GET.
deploy_function sweep "$SWEEP_EMAIL" "$SWEEP_MEMORY" --no-allow-unauthenticated
function_url SWEEP_URL sweep
retry run gc run services add-iam-policy-binding sweep --region="$REGION" \
  --member="serviceAccount:$SCHEDULER_EMAIL" --role=roles/run.invoker
scheduler_verb=update
exists gc scheduler jobs describe "$SWEEP_JOB" --location="$REGION" || scheduler_verb=create
run gc scheduler jobs "$scheduler_verb" http "$SWEEP_JOB" --location="$REGION" --schedule="$SWEEP_SCHEDULE" \
  --time-zone=Etc/UTC --uri="$SWEEP_URL/" --http-method=POST \
  --oidc-service-account-email="$SCHEDULER_EMAIL" --oidc-token-audience="$SWEEP_URL"

echo "upload: $UPLOAD_URL" >&2
echo "status: $STATUS_URL" >&2
echo "infer (private, Cloud Tasks only): $INFER_URL" >&2
echo "sweep (private, Cloud Scheduler only, $SWEEP_SCHEDULE): $SWEEP_URL" >&2
