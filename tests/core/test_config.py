"""Settings: defaults, ``trellis.toml``, ``TRELLIS_*`` variables, and errors that say where."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from trellis.core.config import Settings, load_settings
from trellis.core.errors import ConfigError


@pytest.fixture(autouse=True)
def clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in an empty directory with no TRELLIS_* variables from the outside."""
    for name in list(os.environ):
        if name.upper().startswith("TRELLIS_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_config(text: str, name: str = "trellis.toml") -> Path:
    """Write a config file into the current (temporary) directory."""
    path = Path(name)
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_file_or_environment() -> None:
    """With nothing configured, the embedded defaults apply."""
    settings = load_settings()
    assert settings == Settings()
    assert settings.http.host == "127.0.0.1"
    assert settings.http.port == 8000
    assert settings.tenant == "default"
    assert settings.data_dir == Path(".trellis")
    assert settings.ingest.queue_size == 20_000
    assert settings.bus.subscriber_queue == 64
    assert settings.metadata_url == "sqlite:///.trellis/trellis.db"
    assert settings.timeseries_path == Path(".trellis/timeseries.db")


def test_trellis_toml_in_the_working_directory_is_read() -> None:
    """./trellis.toml is picked up without being named, nested sections included."""
    write_config(
        'tenant = "acme"\ndata_dir = "/var/lib/trellis"\n'
        '[http]\nhost = "0.0.0.0"\nport = 9100\n'
        "[ingest]\nbatch_max = 500\nmax_future_skew_s = 60\n"
    )
    settings = load_settings()
    assert settings.tenant == "acme"
    assert settings.data_dir == Path("/var/lib/trellis")
    assert (settings.http.host, settings.http.port) == ("0.0.0.0", 9100)
    assert settings.ingest.batch_max == 500
    assert settings.ingest.max_future_skew_s == 60.0
    assert settings.ingest.queue_size == 20_000  # untouched values keep their default


def test_explicit_path_is_read(tmp_path: Path) -> None:
    """A path given explicitly is read instead of ./trellis.toml."""
    write_config("[http]\nport = 1111\n")
    other = write_config("[http]\nport = 2222\n", name="prod.toml")
    assert load_settings(tmp_path / other).http.port == 2222


def test_environment_overrides_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """TRELLIS_HTTP__PORT wins over [http] port; the file's other keys stay."""
    write_config('[http]\nhost = "0.0.0.0"\nport = 9100\n')
    monkeypatch.setenv("TRELLIS_HTTP__PORT", "9000")
    monkeypatch.setenv("TRELLIS_TENANT", "globex")
    settings = load_settings()
    assert settings.http.port == 9000
    assert settings.http.host == "0.0.0.0"
    assert settings.tenant == "globex"


def test_overrides_win_over_file_but_not_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keyword overrides (CLI flags) beat the file; the environment beats both."""
    write_config("[http]\nport = 9100\n[sim]\npumps = 3\n")
    monkeypatch.setenv("TRELLIS_SIM__PUMPS", "5")
    settings = load_settings(http={"port": 9200}, sim={"pumps": 4})
    assert settings.http.port == 9200
    assert settings.sim.pumps == 5


def test_bad_environment_value_names_setting_and_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """An invalid value from the environment says which setting, which value, which variable."""
    monkeypatch.setenv("TRELLIS_HTTP__PORT", "99999")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "http.port = '99999'" in message
    assert "less than or equal to 65535" in message
    assert "[env TRELLIS_HTTP__PORT]" in message


def test_bad_file_value_names_setting_file_and_variable() -> None:
    """An invalid value in the file names the setting, the file and the variable to override."""
    write_config('[ingest]\nbatch_max = 0\n[http]\nport = "eighty"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "trellis.toml" in message
    assert "ingest.batch_max = 0: Input should be greater than or equal to 1" in message
    assert "[env TRELLIS_INGEST__BATCH_MAX]" in message
    assert "http.port = 'eighty'" in message


def test_bad_tenant_name_is_refused() -> None:
    """A tenant that is not a lowercase slug is refused."""
    with pytest.raises(ConfigError, match=r"tenant = 'Not A Slug'.*\[env TRELLIS_TENANT\]"):
        load_settings(tenant="Not A Slug")


@pytest.mark.parametrize(
    ("text", "setting"),
    [("colour = 1\n", "colour"), ("[http]\ncolour = 1\n", "http.colour")],
)
def test_unknown_key_is_refused(text: str, setting: str) -> None:
    """A key Trellis does not know (a typo, usually) is an error, not silently ignored."""
    write_config(text)
    with pytest.raises(ConfigError, match=f"{setting} = 1: Extra inputs are not permitted"):
        load_settings()


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    """A config path that does not exist is reported, not replaced by defaults."""
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")


def test_bad_toml_is_an_error() -> None:
    """A file that is not TOML is reported with the parser's position."""
    path = write_config("[http\nport = 1\n")
    with pytest.raises(ConfigError, match=r"'trellis.toml' is not valid TOML: .*line 1"):
        load_settings(path)


def test_settings_are_frozen() -> None:
    """Settings cannot be changed after they were validated."""
    settings = load_settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.tenant = "other"  # type: ignore[misc]


def test_misspelt_environment_variable_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A TRELLIS_* variable that names no setting is an error with a suggestion."""
    monkeypatch.setenv("TRELLIS_HTTP_PORT", "9000")
    with pytest.raises(
        ConfigError, match=r"TRELLIS_HTTP_PORT \(did you mean TRELLIS_HTTP__PORT\?\)"
    ):
        load_settings()
