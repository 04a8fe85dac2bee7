"""The bucket roles through which the project's viewers reach its objects, one per line.

    python3 deploy/viewer_roles.py POLICY_JSON PROJECT_ID

POLICY_JSON is ``gcloud storage buckets get-iam-policy --format=json``'s output. A new bucket gives
``projectViewer:PROJECT_ID`` ``legacyBucketReader`` (list the objects) and, with uniform bucket-level access,
``legacyObjectReader`` (read them); deploy.sh removes the ones printed. Standard library only; a policy that does
not parse stops the deploy (exit 1).
"""

from __future__ import annotations

import json
import sys

VIEWER_ROLES = ("roles/storage.legacyBucketReader", "roles/storage.legacyObjectReader")


def viewer_roles(policy: dict, project: str) -> list[str]:
    member = f"projectViewer:{project}"
    held = {binding["role"] for binding in policy.get("bindings", []) if member in binding.get("members", [])}
    return [role for role in VIEWER_ROLES if role in held]


if __name__ == "__main__":
    print("\n".join(viewer_roles(json.loads(sys.argv[1]), sys.argv[2])))
