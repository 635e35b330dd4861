"""Tests for the configuration schema, loader, env expansion and settings."""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import pytest

from mcp_router.config import (
    DEFAULT_SOURCE,
    BackendConfig,
    ConfigError,
    RouterConfig,
    apply_overrides,
    default_config,
    expand_env,
    load_config,
    load_effective_config,
    mcp_servers_to_config,
    resolve_config_path,
)
from mcp_router.settings import RouterSettings, load_settings

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = REPO_ROOT / "config" / "backends.yaml.example"

FULL_YAML = """\
routing:
  default_strategy: path
  enable_namespace_prefixing: false
  namespace_separator: "-"
  capability_cache_ttl_seconds: 60
  request_timeout_seconds: 12.5
  load_balancing: round_robin
  retry:
    max_attempts: 5
    backoff_multiplier: 1.5
    max_backoff_seconds: 4
    initial_backoff_seconds: 0.2
backends:
  - name: database
    transport: streamable-http
    url: https://db.example.com/mcp
    headers: {Authorization: "Bearer ${DB_TOKEN}"}
    namespace: db
    priority: 10
    enabled: true
    timeout_seconds: 7
    connect_timeout_seconds: 3
    routes:
      - {pattern: "*_user", strategy: path}
      - {pattern: "analyze_*", strategy: fallback, fallback_to: files}
    health_check: {enabled: false, interval_seconds: 11, timeout_seconds: 2, endpoint: /health}
    circuit_breaker: {failure_threshold: 2, timeout_seconds: 9, half_open_attempts: 1}
  - name: files
    command: npx
    args: ["-y", "@modelcontextprotocol/server-filesystem", "/data", 8080]
    env: {LOG_LEVEL: info, DEBUG: true}
    cwd: /tmp
    namespace: ""
    enabled: false
"""


def write(tmp_path: Path, text: str, name: str = "backends.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def config_error(path: Path, environ: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=environ or {})
    return info.value


def one_backend(body: str) -> str:
    return "backends:\n  - name: db\n" + body


# --------------------------------------------------------------------------- valid configs


def test_full_yaml_loads_every_field(tmp_path: Path) -> None:
    path = write(tmp_path, FULL_YAML)
    config = load_config(path, environ={"DB_TOKEN": "s3cret"})

    assert config.source == str(path)
    routing = config.routing
    assert routing.default_strategy == "path"
    assert routing.enable_namespace_prefixing is False
    assert routing.namespace_separator == "-"
    assert routing.capability_cache_ttl_seconds == 60
    assert routing.request_timeout_seconds == 12.5
    assert routing.load_balancing == "round_robin"
    assert routing.retry.max_attempts == 5
    assert routing.retry.backoff_multiplier == 1.5
    assert routing.retry.max_backoff_seconds == 4
    assert routing.retry.initial_backoff_seconds == 0.2

    db, files = config.backends
    assert db.name == "database"
    assert db.transport == "http"  # streamable-http normalised
    assert db.url == "https://db.example.com/mcp"
    assert db.command is None
    assert db.headers == {"Authorization": "Bearer s3cret"}
    assert db.namespace == "db"
    assert db.effective_namespace == "db"
    assert db.priority == 10
    assert db.enabled is True
    assert db.timeout_seconds == 7
    assert db.connect_timeout_seconds == 3
    assert [(r.pattern, r.strategy, r.fallback_to) for r in db.routes] == [
        ("*_user", "path", None),
        ("analyze_*", "fallback", "files"),
    ]
    assert db.health_check.enabled is False
    assert db.health_check.interval_seconds == 11
    assert db.health_check.timeout_seconds == 2
    assert db.health_check.endpoint == "/health"
    assert db.circuit_breaker.failure_threshold == 2
    assert db.circuit_breaker.timeout_seconds == 9
    assert db.circuit_breaker.half_open_attempts == 1

    assert files.transport == "stdio"
    assert files.command == "npx"
    assert files.args == ["-y", "@modelcontextprotocol/server-filesystem", "/data", "8080"]
    assert files.env == {"LOG_LEVEL": "info", "DEBUG": "true"}
    assert files.cwd == "/tmp"
    assert files.namespace == ""
    assert files.effective_namespace == ""
    assert files.enabled is False
    assert config.backend("files") is files
    assert config.backend("nope") is None


def test_empty_file_gives_no_backends(tmp_path: Path) -> None:
    path = write(tmp_path, "# nothing configured yet\n")
    config = load_config(path, environ={})
    assert config.backends == []
    assert config.routing.default_strategy == "capability"
    assert config.source == str(path)


def test_null_sections_are_treated_as_empty(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "routing:\nbackends:\n"), environ={})
    assert config.backends == []
    assert config.routing.request_timeout_seconds == 30


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("    command: srv\n", "stdio"),
        ("    url: http://localhost:8001/mcp\n", "http"),
        ("    url: https://example.com/sse\n", "sse"),
        ("    url: https://example.com/events/sse/\n", "sse"),
        ("    url: https://example.com/sse-proxy/mcp\n", "http"),
        ("    url: http://localhost:8001/sse\n    transport: http\n", "http"),
        ("    url: http://localhost:8001/mcp\n    transport: sse\n", "sse"),
        ("    url: http://localhost:8001/mcp\n    transport: streamable-http\n", "http"),
        ("    command: srv\n    transport: stdio\n", "stdio"),
    ],
)
def test_transport_inference(tmp_path: Path, body: str, expected: str) -> None:
    config = load_config(write(tmp_path, one_backend(body)), environ={})
    assert config.backends[0].transport == expected


def test_effective_namespace_of_dotted_name_is_valid() -> None:
    backend = BackendConfig(name="acme.files", command="srv")
    assert backend.effective_namespace == "acme_files"


def test_default_config() -> None:
    config = default_config()
    assert config.source == DEFAULT_SOURCE == "<built-in default>"
    (demo,) = config.backends
    assert demo.name == "demo"
    assert demo.transport == "stdio"
    assert demo.command == sys.executable
    assert demo.args == ["-m", "mcp_router.template"]
    assert demo.effective_namespace == "demo"


def test_example_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_TOKEN", "tok")
    config = load_config(EXAMPLE)
    names = [backend.name for backend in config.backends]
    assert names == ["demo", "database", "analytics"]
    demo, database, analytics = config.backends
    assert demo.transport == "stdio"
    assert demo.command == "mcp-server"
    assert database.transport == "http"
    assert database.headers == {"Authorization": "Bearer tok"}
    assert analytics.transport == "sse"
    assert analytics.enabled is False
    # every model field appears at least once in the example
    text = EXAMPLE.read_text(encoding="utf-8")
    for field in BackendConfig.model_fields:
        assert f"{field}:" in text, field


def test_example_config_loads_with_empty_token() -> None:
    config = load_config(EXAMPLE, environ={})
    assert config.backends[1].headers == {"Authorization": "Bearer "}


# --------------------------------------------------------------------------- env expansion


def test_env_expansion_forms(tmp_path: Path) -> None:
    text = one_backend(
        "    command: ${CMD}\n"
        "    args: ['${A:-fallback}', '${B:-fallback}', '${C:-fallback}', 'cost: $$5', '$${X}']\n"
        "    env: {'${KEY}': '${KEY}-${KEY}'}\n"
    )
    environ = {"CMD": "my-server", "A": "set", "B": "", "KEY": "v"}
    backend = load_config(write(tmp_path, text), environ=environ).backends[0]
    assert backend.command == "my-server"
    assert backend.args == ["set", "fallback", "fallback", "cost: $5", "${X}"]
    assert backend.env == {"${KEY}": "v-v"}  # keys are never expanded


def test_expand_env_function_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROUTER_TEST_VALUE", "x")
    assert expand_env({"a": ["${ROUTER_TEST_VALUE}", 3]}) == {"a": ["x", 3]}


def test_undefined_variable_names_variable_and_path(tmp_path: Path) -> None:
    text = (
        "backends:\n  - name: a\n    command: x\n"
        "  - name: db\n    url: http://h/mcp\n    headers: {Authorization: 'Bearer ${DB_TOKEN}'}\n"
    )
    path = write(tmp_path, text)
    error = config_error(path)
    message = str(error)
    assert str(path) in message
    assert "backends[1].headers.Authorization" in message
    assert "DB_TOKEN" in message
    assert error.source == str(path)
    assert error.problems[0][0] == "backends[1].headers.Authorization"


def test_malformed_reference_is_an_error(tmp_path: Path) -> None:
    message = str(config_error(write(tmp_path, one_backend("    command: 'x ${1BAD}'\n"))))
    assert "backends[0].command" in message
    assert "${1BAD}" in message


# --------------------------------------------------------------------------- bad configs


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    error = config_error(path)
    assert str(error) == f"{path}: file not found"
    assert error.source == str(path)


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    path = write(tmp_path, "backends:\n  - name: db\n    url: [unclosed\n    priority: 1\n")
    message = str(config_error(path))
    assert message.startswith(f"{path}: line ")
    assert "YAML syntax error" in message
    key = config_error(path).problems[0][0]
    assert key.startswith("line ") and "column" in key


def test_yaml_duplicate_key_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "backends:\n  - name: db\n    name: other\n    command: x\n")
    message = str(config_error(path))
    assert "line 3" in message
    assert "duplicate key 'name'" in message


def test_top_level_must_be_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "- name: db\n  command: x\n")
    message = str(config_error(path))
    assert str(path) in message
    assert "top level must be a mapping" in message


def test_unknown_key(tmp_path: Path) -> None:
    path = write(tmp_path, one_backend("    command: x\n    colour: red\n"))
    error = config_error(path)
    message = str(error)
    assert f"{path}: backends[0].colour: unknown key 'colour'" in message
    assert error.problems[0][0] == "backends[0].colour"


def test_unknown_key_suggests_close_match(tmp_path: Path) -> None:
    path = write(tmp_path, "routing:\n  retry: {max_atempts: 2}\n")
    message = str(config_error(path))
    assert "routing.retry.max_atempts" in message
    assert "did you mean 'max_attempts'" in message


def test_unknown_top_level_key(tmp_path: Path) -> None:
    message = str(config_error(write(tmp_path, "backend: []\n")))
    assert "backend: unknown key 'backend'" in message
    assert "did you mean 'backends'" in message


def test_wrong_type(tmp_path: Path) -> None:
    text = (
        "backends:\n  - name: a\n    command: x\n  - name: db\n    command: y\n    priority: high\n"
    )
    path = write(tmp_path, text)
    error = config_error(path)
    assert (
        f"{path}: backends[1].priority: Input should be a valid integer, "
        "unable to parse string as an integer" in str(error)
    )
    assert "'db'" in str(error)
    assert error.problems[0][0] == "backends[1].priority"


def test_nested_constraint_path(tmp_path: Path) -> None:
    path = write(tmp_path, one_backend("    command: x\n    health_check: {interval_seconds: 0}\n"))
    message = str(config_error(path))
    assert "backends[0].health_check.interval_seconds: Input should be greater than 0" in message


def test_several_problems_are_all_reported(tmp_path: Path) -> None:
    text = "routing:\n  request_timeout_seconds: -1\nbackends:\n  - name: db\n    priority: x\n"
    error = config_error(write(tmp_path, text))
    keys = [key for key, _ in error.problems]
    assert "routing.request_timeout_seconds" in keys
    assert "backends[0].priority" in keys
    assert len(str(error).splitlines()) == len(error.problems)


def test_duplicate_backend_names(tmp_path: Path) -> None:
    text = (
        "backends:\n  - name: db\n    command: x\n"
        "  - name: other\n    command: y\n  - name: db\n    url: http://h/mcp\n"
    )
    path = write(tmp_path, text)
    message = str(config_error(path))
    assert f"{path}: backends[2].name: duplicate backend name 'db'" in message
    assert "backends[0]" in message


def test_both_command_and_url(tmp_path: Path) -> None:
    path = write(tmp_path, one_backend("    command: x\n    url: http://h/mcp\n"))
    message = str(config_error(path))
    assert f"{path}: backends[0]" in message
    assert "exactly one of 'command'" in message
    assert "not both" in message


def test_neither_command_nor_url(tmp_path: Path) -> None:
    path = write(tmp_path, one_backend("    priority: 1\n"))
    message = str(config_error(path))
    assert f"{path}: backends[0]" in message
    assert "exactly one of 'command'" in message


def test_fallback_to_unknown_backend(tmp_path: Path) -> None:
    text = one_backend(
        "    command: x\n"
        "    routes:\n"
        "      - {pattern: 'a*', strategy: fallback, fallback_to: ghost}\n"
    )
    path = write(tmp_path, text)
    message = str(config_error(path))
    assert f"{path}: backends[0].routes[0].fallback_to" in message
    assert "unknown backend 'ghost'" in message


def test_fallback_strategy_requires_target(tmp_path: Path) -> None:
    text = one_backend("    command: x\n    routes:\n      - {pattern: 'a*', strategy: fallback}\n")
    message = str(config_error(write(tmp_path, text)))
    assert "backends[0].routes[0].fallback_to" in message
    assert "requires fallback_to" in message


@pytest.mark.parametrize(
    ("body", "key", "fragment"),
    [
        (
            "    url: http://h/mcp\n    transport: stdio\n",
            "backends[0].transport",
            "needs 'command'",
        ),
        ("    command: x\n    transport: sse\n", "backends[0].transport", "needs 'url'"),
        ("    url: ftp://h/mcp\n", "backends[0].url", "http:// or https://"),
        ("    command: x\n    namespace: 'bad ns'\n", "backends[0].namespace", "must match"),
        ("    command: x\n    transport: carrier-pigeon\n", "backends[0].transport", "Input"),
    ],
)
def test_backend_field_errors(tmp_path: Path, body: str, key: str, fragment: str) -> None:
    error = config_error(write(tmp_path, one_backend(body)))
    assert any(k == key and fragment in m for k, m in error.problems), error.problems


def test_bad_backend_name(tmp_path: Path) -> None:
    error = config_error(write(tmp_path, "backends:\n  - name: '-x'\n    command: x\n"))
    assert error.problems[0][0] == "backends[0].name"


def test_bad_separator(tmp_path: Path) -> None:
    error = config_error(write(tmp_path, "routing: {namespace_separator: '.'}\n"))
    assert error.problems[0][0] == "routing.namespace_separator"


def test_config_error_pickles() -> None:
    error = ConfigError("f.yaml", [("backends[0].url", "bad")])
    clone = pickle.loads(pickle.dumps(error))
    assert str(clone) == "f.yaml: backends[0].url: bad"
    assert clone.problems == error.problems


# --------------------------------------------------------------------------- path resolution


def test_resolve_config_path(tmp_path: Path) -> None:
    assert resolve_config_path(None, {}, cwd=tmp_path) is None
    default = tmp_path / "config" / "backends.yaml"
    default.parent.mkdir()
    default.write_text("backends: []\n")
    assert resolve_config_path(None, {}, cwd=tmp_path) == default
    other = write(tmp_path, "backends: []\n", "other.yaml")
    assert resolve_config_path(str(other), {}, cwd=tmp_path) == other
    assert resolve_config_path(None, {"MCP_BACKENDS_CONFIG": str(other)}, cwd=tmp_path) == other
    with pytest.raises(ConfigError, match="file not found"):
        resolve_config_path(str(tmp_path / "missing.yaml"), {}, cwd=tmp_path)


def test_resolve_config_path_relative_to_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_config_path(None, {}) is None
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "backends.yaml").write_text("")
    assert resolve_config_path(None, {}) == Path("config/backends.yaml")


# --------------------------------------------------------------------------- settings + overrides


def _clear_mcp_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.upper().startswith("MCP_"):
            monkeypatch.delenv(name)


def test_the_router_listens_on_loopback_only_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _clear_mcp_env(monkeypatch)
    assert load_settings().host == "127.0.0.1"


def test_settings_from_env_and_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_mcp_env(monkeypatch)
    monkeypatch.setenv("MCP_PORT", "9001")
    monkeypatch.setenv("MCP_TRANSPORT", "http")
    monkeypatch.setenv("MCP_LOG_LEVEL", "debug")
    monkeypatch.setenv("MCP_AUTH_TOKENS", "a, b,,c")
    monkeypatch.setenv("MCP_BACKENDS_CONFIG", "x.yaml")
    settings = load_settings(port=9100, host=None)
    assert settings.port == 9100  # CLI wins
    assert settings.host == "127.0.0.1"  # None means "not given"
    assert settings.transport == "http"
    assert settings.log_level == "DEBUG"
    assert settings.auth_token_list == ["a", "b", "c"]
    assert settings.backends_config == "x.yaml"


def test_bad_env_value_names_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_mcp_env(monkeypatch)
    monkeypatch.setenv("MCP_PORT", "abc")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.source == "environment"
    assert info.value.problems[0][0] == "MCP_PORT"
    assert str(info.value).startswith("environment: MCP_PORT: Input should be a valid integer")


def test_bad_cli_value_names_option(monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_mcp_env(monkeypatch)
    with pytest.raises(ConfigError) as info:
        load_settings(port=70000)
    assert info.value.source == "command line"
    assert info.value.problems[0][0] == "--port"


def test_load_settings_rejects_unknown_names() -> None:
    with pytest.raises(TypeError, match="colour"):
        load_settings(colour="red")


def test_env_overrides_win_over_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_mcp_env(monkeypatch)
    path = write(tmp_path, FULL_YAML)
    config = load_config(path, environ={"DB_TOKEN": "t"})
    overrides = {
        "MCP_DEFAULT_STRATEGY": "fallback",
        "MCP_ENABLE_NAMESPACES": "true",
        "MCP_NAMESPACE_SEPARATOR": "__",
        "MCP_CACHE_TTL": "5",
        "MCP_REQUEST_TIMEOUT": "99",
        "MCP_MAX_RETRIES": "7",
        "MCP_RETRY_BACKOFF": "3",
        "MCP_MAX_BACKOFF": "8",
        "MCP_HEALTH_CHECK_INTERVAL": "4",
        "MCP_HEALTH_CHECK_TIMEOUT": "1.5",
    }
    for name, value in overrides.items():
        monkeypatch.setenv(name, value)

    result = apply_overrides(config, load_settings())

    assert result.source == str(path)
    routing = result.routing
    assert routing.default_strategy == "fallback"
    assert routing.enable_namespace_prefixing is True
    assert routing.namespace_separator == "__"
    assert routing.capability_cache_ttl_seconds == 5
    assert routing.request_timeout_seconds == 99
    assert routing.retry.max_attempts == 7
    assert routing.retry.backoff_multiplier == 3
    assert routing.retry.max_backoff_seconds == 8
    assert routing.retry.initial_backoff_seconds == 0.2  # untouched YAML value
    assert routing.load_balancing == "round_robin"
    for backend in result.backends:
        assert backend.health_check.interval_seconds == 4
        assert backend.health_check.timeout_seconds == 1.5
    assert result.backends[0].health_check.endpoint == "/health"
    # the original object is not modified
    assert config.routing.request_timeout_seconds == 12.5


def test_unset_overrides_keep_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_mcp_env(monkeypatch)
    monkeypatch.setenv("MCP_REQUEST_TIMEOUT", "3")
    config = load_config(write(tmp_path, FULL_YAML), environ={"DB_TOKEN": "t"})
    result = apply_overrides(config, load_settings())
    assert result.routing.request_timeout_seconds == 3
    assert result.routing.retry.max_attempts == 5
    assert result.backends[0].health_check.interval_seconds == 11
    assert apply_overrides(config, RouterSettings.model_construct()) is config


def test_bad_override_value_is_environment_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_mcp_env(monkeypatch)
    monkeypatch.setenv("MCP_REQUEST_TIMEOUT", "-1")
    monkeypatch.setenv("MCP_NAMESPACE_SEPARATOR", "::")
    with pytest.raises(ConfigError) as info:
        apply_overrides(default_config(), load_settings())
    error = info.value
    assert error.source == "environment"
    keys = [key for key, _ in error.problems]
    assert "MCP_REQUEST_TIMEOUT" in keys
    assert "MCP_NAMESPACE_SEPARATOR" in keys
    assert "environment: MCP_REQUEST_TIMEOUT: Input should be greater than 0" in str(error)


def test_unparseable_override_value(monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_mcp_env(monkeypatch)
    monkeypatch.setenv("MCP_MAX_RETRIES", "lots")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.problems[0][0] == "MCP_MAX_RETRIES"


def test_load_effective_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_mcp_env(monkeypatch)
    monkeypatch.setenv("MCP_CACHE_TTL", "1")
    settings = load_settings()
    builtin = load_effective_config(settings, environ={}, cwd=tmp_path)
    assert builtin.source == DEFAULT_SOURCE
    assert builtin.routing.capability_cache_ttl_seconds == 1
    path = write(tmp_path, one_backend("    command: x\n"), "mine.yaml")
    loaded = load_effective_config(load_settings(backends_config=str(path)), environ={})
    assert loaded.source == str(path)
    assert [b.name for b in loaded.backends] == ["db"]


# --------------------------------------------------------------------------- mcpServers import

MCP_SERVERS = {
    "mcpServers": {
        "files": {
            "command": "npx",
            "args": ["-y", "@modelcontextprotocol/server-filesystem", "/data"],
            "env": {"TOKEN": "${FILES_TOKEN:-none}"},
            "cwd": "/srv",
            "autoApprove": ["read_file"],
        },
        "remote": {"url": "https://api.example.com/mcp", "headers": {"X-Key": "k"}},
        "events": {"type": "sse", "url": "https://api.example.com/events"},
        "streamy": {"transport": "streamable-http", "url": "https://api.example.com/x/sse"},
        "off": {"command": "srv", "disabled": True},
    },
    "globalShortcut": "Ctrl+Space",
}


def test_mcp_servers_to_config() -> None:
    data = mcp_servers_to_config(MCP_SERVERS)
    assert data["backends"][0] == {
        "name": "files",
        "command": "npx",
        "args": ["-y", "@modelcontextprotocol/server-filesystem", "/data"],
        "env": {"TOKEN": "${FILES_TOKEN:-none}"},
        "cwd": "/srv",
    }
    assert data["backends"][2]["transport"] == "sse"
    assert data["backends"][3]["transport"] == "http"
    assert data["backends"][4]["enabled"] is False
    config = RouterConfig.model_validate(data)
    assert [b.name for b in config.backends] == ["files", "remote", "events", "streamy", "off"]


def test_mcp_servers_json_file(tmp_path: Path) -> None:
    path = write(tmp_path, json.dumps(MCP_SERVERS), ".mcp.json")
    config = load_config(path, environ={})
    files, remote, events, streamy, off = config.backends
    assert files.transport == "stdio"
    assert files.command == "npx"
    assert files.env == {"TOKEN": "none"}
    assert files.cwd == "/srv"
    assert remote.transport == "http"
    assert remote.headers == {"X-Key": "k"}
    assert events.transport == "sse"
    assert streamy.transport == "http"  # explicit type beats the /sse path
    assert off.enabled is False
    assert config.source == str(path)


def test_mcp_servers_errors_use_server_names(tmp_path: Path) -> None:
    data = {"mcpServers": {"good": {"command": "x"}, "broken": {"args": ["a"]}}}
    path = write(tmp_path, json.dumps(data), "claude_desktop_config.json")
    message = str(config_error(path))
    assert f"{path}: mcpServers.broken: " in message
    assert "exactly one of 'command'" in message


def test_mcp_servers_unknown_type(tmp_path: Path) -> None:
    data = {"mcpServers": {"w": {"type": "websocket", "url": "wss://x"}}}
    message = str(config_error(write(tmp_path, json.dumps(data), "c.json")))
    assert "mcpServers.w.type" in message
    assert "websocket" in message


def test_json_syntax_error(tmp_path: Path) -> None:
    path = write(tmp_path, '{"mcpServers": {"a": }\n', "bad.json")
    message = str(config_error(path))
    assert message.startswith(f"{path}: line 1, column ")
    assert "JSON syntax error" in message


def test_plain_router_json(tmp_path: Path) -> None:
    data = {"backends": [{"name": "a", "url": "http://h/sse"}]}
    config = load_config(write(tmp_path, json.dumps(data), "router.json"), environ={})
    assert config.backends[0].transport == "sse"
