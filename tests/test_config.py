"""Schedule configurations: validated YAML in, immutable versions out, nothing stored on any error."""
from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from allegro_ops import InvalidConfig, NotFound, Workspace
from allegro_ops.config import content_hash, from_snapshot, load_path, parse_document, snapshot_json, to_yaml

VALID = {
    "client": "acme",
    "name": "nightly",
    "description": "A nightly schedule.",
    "mode": "manual",
    "calendar": {"cron": "0 2 * * *", "timezone": "Europe/Berlin"},
    "jobs": [
        {"name": "first", "type": "demo.noop", "params": {"count": 5}},
        {"name": "second", "type": "demo.noop", "batch_size": 2, "concurrency": 1},
    ],
}


def write(path: Path, doc) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False))
    return path


def with_changes(**changes) -> dict:
    doc = yaml.safe_load(yaml.safe_dump(VALID))
    doc.update(changes)
    return doc


def stored_versions(ws: Workspace) -> list[tuple]:
    return ws.store.read(lambda con: con.execute(
        "SELECT client, schedule, version FROM config_versions ORDER BY ALL").fetchall())


# ------------------------------------------------------------------ versions
def test_apply_stores_a_new_version_only_when_the_content_changed(workspace, tmp_path):
    path = write(tmp_path / "nightly.yaml", VALID)
    assert workspace.apply_config(path) == [{"client": "acme", "schedule": "nightly", "version": 1, "changed": True}]
    assert workspace.apply_config(path) == [{"client": "acme", "schedule": "nightly", "version": 1, "changed": False}]

    # the same content written differently (comments, key order, defaults spelled out) is no change
    reordered = {k: VALID[k] for k in reversed(list(VALID))}
    reordered["jobs"] = [dict(VALID["jobs"][0], batch_size=100, concurrency=4), VALID["jobs"][1]]
    write(path, "# a comment\n" + yaml.safe_dump(reordered, sort_keys=True))
    assert workspace.apply_config(path)[0]["version"] == 1

    write(path, with_changes(description="Changed."))
    assert workspace.apply_config(path)[0] == {"client": "acme", "schedule": "nightly", "version": 2, "changed": True}
    assert stored_versions(workspace) == [("acme", "nightly", 1), ("acme", "nightly", 2)]
    assert workspace.config("acme", "nightly").description == "Changed."


def test_config_versions_are_immutable_and_executions_keep_theirs(workspace, tmp_path):
    path = write(tmp_path / "nightly.yaml", VALID)
    workspace.apply_config(path)
    workspace.create("acme", "nightly", "2026-11-24")
    v1 = workspace.store.read(lambda con: con.execute(
        "SELECT config_json FROM config_versions WHERE version = 1").fetchall())
    write(path, with_changes(jobs=[VALID["jobs"][1]]))
    workspace.apply_config(path)
    assert workspace.store.read(lambda con: con.execute(
        "SELECT config_json FROM config_versions WHERE version = 1").fetchall()) == v1
    e = workspace.execution("acme", "nightly", "2026-11-24")
    assert e.config.version == 1 and [j.name for j in e.jobs] == ["first", "second"]
    assert workspace.config("acme", "nightly").version == 2


def test_a_folder_applies_every_schedule_in_it(workspace, tmp_path):
    write(tmp_path / "cfg" / "a.yaml", VALID)
    write(tmp_path / "cfg" / "sub" / "b.yml", with_changes(client="globex"))
    write(tmp_path / "cfg" / "notes.txt", "not a config")
    applied = workspace.apply_config(tmp_path / "cfg")
    assert sorted((a["client"], a["schedule"]) for a in applied) == [("acme", "nightly"), ("globex", "nightly")]
    assert [s.client for s in workspace.schedules()] == ["acme", "globex"]


def test_one_file_may_hold_several_schedules_as_yaml_documents(workspace, tmp_path):
    text = yaml.safe_dump(VALID) + "---\n" + yaml.safe_dump(with_changes(name="weekly"))
    applied = workspace.apply_config(write(tmp_path / "two.yaml", text))
    assert [a["schedule"] for a in applied] == ["nightly", "weekly"]


# ------------------------------------------------------------------ errors name file, field and problem
BAD = [
    pytest.param(with_changes(jobs=[{"name": "a", "type": "no.such.type"}]), "jobs.0.type",
                 "unknown job type 'no.such.type'", id="unknown-job-type"),
    pytest.param(with_changes(jobs=[{"name": "a", "type": "demo.noop"}, {"name": "a", "type": "demo.noop"}]), "",
                 "duplicate job name 'a'", id="duplicate-job-names"),
    pytest.param(with_changes(jobs=[]), "jobs", "at least 1 item", id="empty-job-list"),
    pytest.param(with_changes(calendar={"cron": "61 2 * * *"}), "calendar.cron",
                 "'61 2 * * *' is not a 5-field cron expression", id="bad-cron"),
    pytest.param(with_changes(calendar={"cron": "0 2 * * * *"}), "calendar.cron",
                 "is not a 5-field cron expression", id="six-field-cron"),
    pytest.param(with_changes(calendar={"cron": "0 2 * * *", "timezone": "Mars/Olympus"}), "calendar.timezone",
                 "unknown IANA timezone 'Mars/Olympus'", id="unknown-timezone"),
    pytest.param(with_changes(owner="ops"), "owner", "Extra inputs are not permitted", id="extra-field"),
    pytest.param(with_changes(jobs=[{"name": "a", "type": "demo.noop", "retries": 3}]), "jobs.0.retries",
                 "Extra inputs are not permitted", id="extra-job-field"),
    pytest.param(with_changes(calendar={"cron": "0 2 * * *", "tz": "UTC"}), "calendar.tz",
                 "Extra inputs are not permitted", id="extra-calendar-field"),
    pytest.param({k: v for k, v in VALID.items() if k != "mode"}, "mode", "Field required", id="missing-mode"),
    pytest.param(with_changes(mode="sometimes"), "mode", "'automatic' or 'manual'", id="bad-mode"),
    pytest.param(with_changes(client="Acme Corp"), "client", "should match pattern", id="bad-client-name"),
    pytest.param(with_changes(jobs=[{"name": "a", "type": "demo.noop", "batch_size": 0}]), "jobs.0.batch_size",
                 "greater than or equal to 1", id="zero-batch-size"),
    pytest.param(with_changes(jobs=[{"name": "a", "type": "demo.noop", "params": {"start": dt.date(2026, 1, 2)}}]),
                 "jobs.0.params", "JSON", id="params-not-json-date"),
    pytest.param(with_changes(jobs=[{"name": "a", "type": "demo.noop", "params": {"x": {1: "a", "b": "c"}}}]),
                 "jobs.0.params", "JSON", id="params-not-json-keys"),
    pytest.param(["a", "list"], "", "expected a mapping", id="not-a-mapping"),
]


@pytest.mark.parametrize("doc, field, problem", BAD)
def test_invalid_config_names_the_file_the_field_and_the_problem_and_stores_nothing(workspace, tmp_path,
                                                                                      doc, field, problem):
    path = write(tmp_path / "bad.yaml", doc)
    with pytest.raises(InvalidConfig) as info:
        workspace.apply_config(path)
    err = info.value
    assert err.source == str(path)
    assert err.field == field
    assert problem in err.problem
    assert str(err).startswith(f"invalid config {path}")
    assert "\n" not in str(err)
    assert stored_versions(workspace) == []


@pytest.mark.parametrize("text, problem", [
    ("client: acme\n  name: [unclosed\n", "malformed YAML"),
    ("client: acme\nname: nightly\n\tmode: manual\n", "malformed YAML"),
    ("when: 2026-02-30\n", "malformed YAML"),  # a YAML date that does not exist
    ("!!python/object:os.system {}\n", "malformed YAML"),
    ("", "the file holds no schedule"),
    ("just a string\n", "expected a mapping"),
])
def test_malformed_yaml_is_invalid_config_naming_the_file(workspace, tmp_path, text, problem):
    path = write(tmp_path / "broken.yaml", text)
    with pytest.raises(InvalidConfig) as info:
        workspace.apply_config(path)
    assert info.value.source == str(path) and problem in info.value.problem
    assert stored_versions(workspace) == []


def test_malformed_yaml_names_the_line(workspace, tmp_path):
    path = write(tmp_path / "broken.yaml", "client: acme\nname: nightly\njobs: [a, b\nmode: manual\n")
    with pytest.raises(InvalidConfig) as info:
        workspace.apply_config(path)
    assert info.value.field.startswith("line ")


def test_one_bad_file_in_a_folder_stores_nothing_from_the_folder(workspace, tmp_path):
    write(tmp_path / "cfg" / "a-good.yaml", VALID)
    write(tmp_path / "cfg" / "b-bad.yaml", with_changes(client="globex", calendar={"cron": "every day"}))
    write(tmp_path / "cfg" / "c-good.yaml", with_changes(client="initech"))
    with pytest.raises(InvalidConfig) as info:
        workspace.apply_config(tmp_path / "cfg")
    assert info.value.source.endswith("b-bad.yaml") and info.value.field == "calendar.cron"
    assert stored_versions(workspace) == []
    assert workspace.schedules() == []


def test_the_same_schedule_twice_in_a_folder_is_refused(workspace, tmp_path):
    write(tmp_path / "cfg" / "a.yaml", VALID)
    write(tmp_path / "cfg" / "b.yaml", with_changes(description="Another."))
    with pytest.raises(InvalidConfig, match="acme/nightly is defined more than once"):
        workspace.apply_config(tmp_path / "cfg")
    assert stored_versions(workspace) == []


@pytest.mark.parametrize("make", [
    lambda p: p / "missing.yaml",
    lambda p: (p / "empty-folder").mkdir() or p / "empty-folder",
], ids=["no-such-file", "folder-without-yaml"])
def test_a_path_without_configs_is_invalid_config(workspace, tmp_path, make):
    with pytest.raises(InvalidConfig):
        workspace.apply_config(make(tmp_path))


def test_unknown_client_or_schedule_is_not_found(workspace, tmp_path):
    workspace.apply_config(write(tmp_path / "nightly.yaml", VALID))
    with pytest.raises(NotFound, match="unknown client 'globex'"):
        workspace.config("globex", "nightly")
    with pytest.raises(NotFound, match="unknown schedule 'acme/weekly'"):
        workspace.export_config("acme", "weekly")


# ------------------------------------------------------------------ export round trip
def test_exported_yaml_applies_back_unchanged(workspace, tmp_path):
    workspace.apply_config(write(tmp_path / "nightly.yaml", VALID))
    exported = workspace.export_config("acme", "nightly")
    assert yaml.safe_load(exported)["jobs"][0]["params"] == {"count": 5}
    back = write(tmp_path / "exported.yaml", exported)
    assert workspace.apply_config(back) == [{"client": "acme", "schedule": "nightly", "version": 1, "changed": False}]

    edited = yaml.safe_load(exported)
    edited["jobs"].reverse()
    write(back, edited)
    assert workspace.apply_config(back)[0]["version"] == 2
    assert [j.name for j in workspace.config("acme", "nightly").jobs] == ["second", "first"]


def test_demo_configs_round_trip_through_export(demo, tmp_path):
    for s in demo.schedules():
        path = write(tmp_path / f"{s.client}-{s.schedule}.yaml", demo.export_config(s.client, s.schedule))
        assert demo.apply_config(path)[0]["changed"] is False


# ------------------------------------------------------------------ fuzz
json_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
yamlish = st.recursive(
    json_leaf | st.dates() | st.binary(max_size=4) | st.floats(),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=6) | st.integers(), children, max_size=3),
    max_leaves=12,
)


def _maybe(value, alternative=yamlish):
    return st.just(value) | alternative


@st.composite
def near_valid(draw):
    """A schedule document with some parts replaced by arbitrary data."""
    job = st.fixed_dictionaries(
        {"name": _maybe("job-a", st.text(max_size=8)), "type": _maybe("demo.noop", st.text(max_size=12))},
        optional={"params": yamlish, "batch_size": yamlish, "concurrency": _maybe(2), "extra": yamlish},
    )
    doc = draw(st.fixed_dictionaries(
        {
            "client": _maybe("acme"),
            "name": _maybe("nightly"),
            "mode": _maybe("manual", st.sampled_from(["automatic", "daily", ""])),
            "calendar": _maybe({"cron": "0 2 * * *"}, st.fixed_dictionaries(
                {"cron": _maybe("*/5 * * * *", st.text(max_size=12))}, optional={"timezone": yamlish})),
            "jobs": st.lists(job, max_size=3) | yamlish,
        },
        optional={"description": yamlish},
    ))
    return doc


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=near_valid() | yamlish)
def test_parsing_any_document_gives_a_config_or_invalid_config(doc):
    try:
        cfg = parse_document(doc, "fuzz.yaml")
    except InvalidConfig as exc:
        assert exc.source == "fuzz.yaml" and "\n" not in str(exc)
        return
    # whatever validates can be stored, hashed and read back
    assert from_snapshot(snapshot_json(cfg), 1).jobs == cfg.jobs
    assert len(content_hash(cfg)) == 64
    assert yaml.safe_load(to_yaml(cfg))["client"] == cfg.client


@settings(max_examples=150, deadline=None)
@given(params=st.dictionaries(st.text(max_size=6) | st.integers(), yamlish, max_size=4))
def test_any_params_are_stored_as_given_or_refused_as_not_json(params):
    doc = with_changes(jobs=[{"name": "a", "type": "demo.noop", "params": params}])
    try:
        cfg = parse_document(doc, "fuzz.yaml")
    except InvalidConfig as exc:
        assert exc.field == "jobs.0.params" or exc.field.startswith("jobs.0.params.")
        return
    assert from_snapshot(snapshot_json(cfg), 1).jobs[0].params == params


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=st.sampled_from(list("ab:-[]{}!&*|>'\"#%@`,?\n\t 0123456789.")), max_size=60)
       | st.builds(lambda d: yaml.safe_dump(d), yamlish | near_valid()))
def test_loading_any_text_gives_configs_or_invalid_config(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("fuzz") / "fuzz.yaml"
    path.write_text(text)
    try:
        configs = load_path(path)
    except InvalidConfig as exc:
        assert exc.source == str(path)
        return
    assert all(len(content_hash(c)) == 64 for c in configs)


def test_a_realistic_config_with_comments_and_anchors_loads(tmp_path):
    text = textwrap.dedent("""\
        # billing
        client: acme
        name: nightly
        mode: automatic
        calendar: {cron: "30 1 * * 1-5", timezone: America/New_York}
        jobs:
          - &base {name: rate, type: demo.noop, batch_size: 25}
          - <<: *base
            name: bill
        """)
    (cfg,) = load_path(write(tmp_path / "n.yaml", text))
    assert [(j.name, j.batch_size) for j in cfg.jobs] == [("rate", 25), ("bill", 25)]
