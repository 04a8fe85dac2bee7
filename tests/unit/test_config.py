"""The configuration module is the single list of environment variables, and the README carries its table."""

import pytest

from shared import config
from tests.conftest import REPO


def test_defaults_parse():
    loaded = config.load({})
    assert loaded.MAX_UPLOAD_BYTES == 10 * 1024 * 1024 and loaded.GOOGLE_CLOUD_PROJECT == "demo-skin"
    assert loaded.ALLOWED_ORIGINS == () and loaded.MODEL_RUNTIME == "onnx"


def test_environment_overrides_and_bad_values_name_the_variable():
    assert config.load({"ALLOWED_ORIGINS": "https://a.example, https://b.example"}).ALLOWED_ORIGINS == (
        "https://a.example",
        "https://b.example",
    )
    with pytest.raises(ValueError, match="MAX_ATTEMPTS"):
        config.load({"MAX_ATTEMPTS": "five"})


@pytest.mark.parametrize(
    ("raw", "value"), [("true", True), (" On ", True), ("1", True), ("false", False), ("no", False)]
)
def test_booleans_parse(raw, value):
    assert config.load({"APP_CHECK_REQUIRED": raw}).APP_CHECK_REQUIRED is value


def test_a_misspelt_boolean_is_refused_rather_than_read_as_false():
    with pytest.raises(ValueError, match="APP_CHECK_REQUIRED"):
        config.load({"APP_CHECK_REQUIRED": "ture"})


def test_readme_table_is_the_generated_one():
    assert config.markdown_table() in (REPO / "README.md").read_text(), "run `make config-table` and paste it"


def test_no_module_but_config_reads_the_environment():
    for path in [*(REPO / "shared").rglob("*.py"), *(REPO / "functions").rglob("main.py")]:
        if path.name != "config.py":
            text = path.read_text()
            assert "os.environ" not in text and "os.getenv" not in text, f"{path}: read settings via shared.config"


def test_the_local_stack_uses_the_service_defaults_but_where_it_says_why():
    from devstack.stack import LOCAL_DEPARTURES, service_env, settings

    defaults = config.defaults()
    local = service_env(settings({}))
    assert set(local) <= set(defaults), "the stack sets a variable shared.config does not know"
    for name, value in local.items():
        if not name.endswith("_EMULATOR_HOST") and name not in LOCAL_DEPARTURES:
            assert value == defaults[name], f"{name}: the local stack says {value!r}, shared.config {defaults[name]!r}"


def test_deploy_settings_are_the_service_defaults():
    service = config.load({})
    given = {}
    for line in (REPO / "deploy/config.env").read_text().splitlines():
        name, _, value = line.partition("=")
        if not line.startswith("#") and name in config.defaults() and value:  # empty: the service's default
            given[name] = value
    assert {"MAX_ATTEMPTS", "LEASE_SECONDS", "JOB_TTL_DAYS", "UPLOADS_PER_USER_PER_HOUR"} <= set(given)
    for name, value in given.items():
        assert getattr(config.load({name: value}), name) == getattr(service, name), f"deploy/config.env {name}"


def test_readme_documents_the_local_stack_variables():
    from devstack.stack import DEFAULTS

    readme = (REPO / "README.md").read_text()
    for name in DEFAULTS:
        assert f"`{name}`" in readme, name
