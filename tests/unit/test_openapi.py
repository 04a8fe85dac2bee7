"""docs/openapi.yaml: a valid OpenAPI 3.1 document that names every error code the functions can answer."""

import re
from pathlib import Path

import yaml
from openapi_spec_validator import validate

REPO = Path(__file__).resolve().parents[2]
SPEC = yaml.safe_load((REPO / "docs/openapi.yaml").read_text())


def test_the_document_is_valid_openapi_3_1():
    assert SPEC["openapi"].startswith("3.1")
    validate(SPEC)  # raises OpenAPIValidationError with the failing path


def test_the_three_functions_are_described():
    operations = {
        op["operationId"]
        for item in SPEC["paths"].values()
        for op in item.values()
        if isinstance(op, dict) and "operationId" in op
    }
    assert {"uploadPhoto", "getJob", "deleteJob", "deliverJob"} <= operations


def test_every_error_code_in_the_code_is_documented():
    source = "\n".join(path.read_text() for path in [*REPO.glob("shared/**/*.py"), *REPO.glob("functions/*/main.py")])
    raised = set(re.findall(r'ServiceError\(\s*\d{3},\s*"([a-z_]+)"', source)) | {"unavailable", "invalid_request"}
    documented = SPEC["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["description"]
    assert raised, "no error code found: the pattern no longer matches the code"
    assert {code for code in raised if f"`{code}`" not in documented} == set()


def test_the_job_document_lists_the_contract_fields_only():
    job = SPEC["components"]["schemas"]["Job"]
    assert job["additionalProperties"] is False
    assert set(job["properties"]) == {
        "jobId",
        "ownerUid",
        "status",
        "createdAt",
        "updatedAt",
        "expireAt",
        "image",
        "attempts",
        "result",
        "rejection",
        "error",
    }


def test_every_path_documents_the_405_its_function_gives_other_methods():
    """Each function answers 405 with Allow to a method it does not serve; a generated client must know it."""
    missing = [
        path
        for path, item in SPEC["paths"].items()
        if not any(isinstance(op, dict) and "405" in op.get("responses", {}) for op in item.values())
    ]
    assert missing == []
