"""Settings: env parsing, nesting, conflicts, secrets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from retrieval.errors import ConfigError
from retrieval.settings import load_settings


def test_defaults() -> None:
    s = load_settings()
    assert s.qdrant.mode == "edge"
    assert s.text_model == "all-MiniLM-L6-v2"
    assert s.data_dir == Path("data")


def test_env_and_nested(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SIMLOOKUP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SIMLOOKUP_BATCH_SIZE", "16")
    monkeypatch.setenv("SIMLOOKUP_QDRANT__MODE", "server")
    monkeypatch.setenv("SIMLOOKUP_QDRANT__URL", "http://localhost:6333")
    monkeypatch.setenv("SIMLOOKUP_QDRANT__API_KEY", "s3cret-key")
    monkeypatch.setenv("SIMLOOKUP_QDRANT__HNSW_M", "32")
    monkeypatch.setenv("SIMLOOKUP_FAISS__IVF_NPROBE", "4")
    s = load_settings()
    assert s.data_dir == tmp_path and s.batch_size == 16
    assert s.qdrant.mode == "server" and s.qdrant.hnsw_m == 32 and s.faiss.ivf_nprobe == 4
    pub = json.dumps(s.public())
    assert "s3cret-key" not in pub and '"api_key_set": true' in pub
    assert "s3cret-key" not in repr(s)


def test_url_with_path_conflicts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMLOOKUP_QDRANT__URL", "http://x:6333")
    monkeypatch.setenv("SIMLOOKUP_QDRANT__PATH", "/tmp/q")
    with pytest.raises(ConfigError, match="SIMLOOKUP_QDRANT__URL.*SIMLOOKUP_QDRANT__PATH"):
        load_settings()


def test_unknown_mode_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMLOOKUP_QDRANT__MODE", "cloud")
    with pytest.raises(ConfigError, match="SIMLOOKUP_QDRANT__MODE"):
        load_settings()


def test_server_needs_url_and_url_needs_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMLOOKUP_QDRANT__MODE", "server")
    with pytest.raises(ConfigError, match="needs SIMLOOKUP_QDRANT__URL"):
        load_settings()
    monkeypatch.setenv("SIMLOOKUP_QDRANT__MODE", "edge")
    monkeypatch.setenv("SIMLOOKUP_QDRANT__URL", "http://x:6333")
    with pytest.raises(ConfigError, match="MODE=server"):
        load_settings()


def test_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMLOOKUP_BATCH_SIZE", "0")
    with pytest.raises(ConfigError, match="SIMLOOKUP_BATCH_SIZE"):
        load_settings()
    monkeypatch.delenv("SIMLOOKUP_BATCH_SIZE")
    monkeypatch.setenv("SIMLOOKUP_DEVICE", "tpu")
    with pytest.raises(ConfigError, match="SIMLOOKUP_DEVICE"):
        load_settings()


def test_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SIMLOOKUP_TEXT_MODEL=/models/foo\n")
    monkeypatch.chdir(tmp_path)
    assert load_settings().text_model == "/models/foo"


def test_empty_api_key_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from retrieval.errors import ConfigError
    from retrieval.settings import load_settings

    for blank in ("", "   "):
        monkeypatch.setenv("SIMLOOKUP_API__KEY", blank)
        with pytest.raises(ConfigError, match="SIMLOOKUP_API__KEY: is set but empty"):
            load_settings()
    monkeypatch.setenv("SIMLOOKUP_API__KEY", "k")
    assert load_settings().api.key is not None


def test_url_credentials_are_redacted() -> None:
    from retrieval.settings import QdrantSettings, redact_url

    q = QdrantSettings(mode="server", url="https://user:pa:ss@qdrant.example:6333/x")
    assert q.public()["url"] == "https://***@qdrant.example:6333/x"
    assert redact_url("failed: http://a:b@h:1 and grpc://c@h2 and http://plain:6333") == (
        "failed: http://***@h:1 and grpc://***@h2 and http://plain:6333"
    )


def test_with_qdrant_mode() -> None:
    from retrieval.errors import ConfigError
    from retrieval.settings import QdrantSettings, Settings

    s = Settings(qdrant=QdrantSettings(mode="edge"))
    assert s.with_qdrant_mode("local").qdrant.mode == "local" and s.with_qdrant_mode(None) is s
    with pytest.raises(ConfigError, match="SIMLOOKUP_QDRANT__URL"):
        s.with_qdrant_mode("server")
    srv = Settings(qdrant=QdrantSettings(mode="server", url="http://h:6333"))
    assert srv.with_qdrant_mode("edge").qdrant.url is None


@pytest.mark.parametrize(
    ("var", "value", "fix"),
    [
        ("SIMLOOKUP_QDRANT__PAYLOAD_INDEXES", "nope", "give a JSON object"),
        ("SIMLOOKUP_QDRANT", "{", "set its fields one by one"),
    ],
)
def test_malformed_json_setting_is_a_config_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, fix: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError, match=f"{var} is not valid JSON") as info:
        load_settings()
    assert fix in str(info.value)


def test_malformed_json_setting_in_dotenv_names_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text('SIMLOOKUP_QDRANT={"api_key": "hush-42"\n')
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"SIMLOOKUP_QDRANT \(in .env\) is not valid JSON") as info:
        load_settings()
    assert "hush-42" not in str(info.value)  # the value is never shown: it can hold a secret
