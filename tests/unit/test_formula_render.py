"""The formula ``proxysql_ha/*.sls`` rendered by Salt's own renderers, as a minion renders it.

The ``salt`` dict the templates see holds ``proxysql_ha.config`` (a real checked configuration,
built by ``proxysql_ha_config.build`` from the test's pillar, secrets hidden as the module
hides them), ``proxysql_ha.jobs`` computed from it, and the few core functions the formula asks.
"""

import copy
import os
import re
import shlex
import subprocess
import sys

import pytest
import salt.utils.data
import yaml

import proxysql_ha_config
from tests.unit.conftest import REPO

FORMULA = REPO / "proxysql_ha"
PYTHON = "/usr/bin/python3"
MINION_CONF = "/etc/salt/minion"
PEER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGW2YzQ0ZWI1ZjQ1ZDVhYmE1ZTI0ZmYxZWY1 root@proxysql-b"
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ5Gd0tF3m9uZlN5c2tleWhvc3RrZXkx"
PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
UCARP_PASSWORD = "ucarp-s3cret"


@pytest.fixture
def pillar(tmp_path):
    """The ``proxysql_ha`` pillar of a node: vhid 9 on em0, VIP 192.0.2.50, formula dirs under tmp."""
    return {
        "vhid": 9,
        "interface": "em0",
        "vip": "192.0.2.50",
        "role_source": "vip",
        "node_id": "proxysql-a",
        "peer": {"transport": "local", "path": str(tmp_path / "peer-inbox")},
        "formula": {"carp": "auto", "restart_minion": False, "libexec_dir": str(tmp_path / "libexec"),
                    "etc_dir": str(tmp_path / "etc"), "receive_user": "proxysql-ha-test",
                    "ucarp": {"src_ip": "192.0.2.11", "password": UCARP_PASSWORD}},
    }


def shown(conf):
    """``conf`` as ``proxysql_ha.config`` shows it: secrets hidden."""
    conf = copy.deepcopy(conf)
    if conf["formula"]["ssh_private_key"]:
        conf["formula"]["ssh_private_key"] = "<hidden>"
    if conf["formula"]["ucarp"]["password"]:
        conf["formula"]["ucarp"]["password"] = "<hidden>"
    return conf


def jobs(conf):
    """``proxysql_ha.jobs`` of a MASTER with this configuration."""
    sched = conf["schedule"]
    plan = (("ship", "proxysql_ha.ship", True), ("purge", "proxysql_ha.purge", False),
            ("reconcile", "proxysql_ha.reconcile", True), ("check", "proxysql_ha.check", True))
    return {sched[f"{kind}_job"]: {"function": function, "seconds": sched[f"{kind}_interval"], "jid_include": False,
                                   "return_job": False, "enabled": enabled}
            for kind, function, enabled in plan}


@pytest.fixture
def render(render_sls, pillar):
    """``render(sls, os_family="Debian", daemon_up=True)``: the states ``proxysql_ha/<sls>.sls`` renders for
    ``pillar`` (``daemon_up``: whether a minion daemon answers, asked by a masterless apply)."""

    def run(sls, os_family="Debian", daemon_up=True):
        conf = proxysql_ha_config.build(pillar, os_family, "proxysql-a")
        functions = {
            "proxysql_ha.config": lambda: shown(conf),
            "proxysql_ha.jobs": lambda: jobs(conf),
            "proxysql_ha.daemon_up": lambda: daemon_up,
            "config.get": lambda key, default="": {"conf_file": MINION_CONF}.get(key, default),
            "file.dirname": os.path.dirname,
            "cmd.which": {"ip": "/usr/sbin/ip"}.get,
            "pillar.get": lambda key, default="": salt.utils.data.traverse_dict_and_list(
                {"proxysql_ha": pillar}, key, default),
        }
        grains = {"os_family": os_family, "pythonexecutable": PYTHON, "init": "systemd"}
        return render_sls(FORMULA / f"{sls}.sls", functions, grains=grains, saltenv="base", sls=f"proxysql_ha.{sls}")

    return run


def args(rendered, state_id):
    """``(function, {argument: value})`` of one state: Salt's list of one-key dicts made a dict."""
    (function, arguments), = rendered[state_id].items()
    return function, {key: value for argument in arguments for key, value in argument.items()}


def by_name(rendered):
    """``{name argument: (function, arguments)}`` of every state in ``rendered``."""
    return {found[1]["name"]: found for found in (args(rendered, state_id) for state_id in rendered)}


@pytest.mark.parametrize("os_family", ["FreeBSD", "Debian"])
@pytest.mark.parametrize("sls", sorted(path.stem for path in FORMULA.glob("*.sls")))
def test_every_sls_renders_to_states_and_includes_only_existing_sls(render, sls, os_family):
    rendered = render(sls, os_family)

    for state_id, declaration in rendered.items():
        if state_id == "include":
            assert all((FORMULA / f"{name.split('.', 1)[1]}.sls").is_file() for name in declaration)
            continue
        function, _ = args(rendered, state_id)
        assert re.fullmatch(r"[a-z_]+\.[a-z_]+", function)


# ---- CARP wiring -----------------------------------------------------------------------------


def devd_rules(text):
    """``[(header, {variable: regex}, action)]`` of a devd.conf text."""
    rules = []
    for header, body in re.findall(r"^(notify \d+) \{\n(.*?)^\};", text, flags=re.M | re.S):
        matches = dict(re.findall(r'^\s*match\s+"(\w+)"\s+"([^"]*)";', body, flags=re.M))
        action, = re.findall(r'^\s*action\s+"(.*)";', body, flags=re.M)
        rules.append((header, matches, action))
    return rules


def test_freebsd_renders_a_devd_rule_of_the_shared_shape_calling_the_hook(render, shared_dir, pillar):
    shared = devd_rules((shared_dir / "freebsd" / "devd-carp.conf").read_text())
    hook = pillar["formula"]["libexec_dir"] + "/proxysql-ha-event"

    function, rule_file = args(render("carp", "FreeBSD"), "proxysql_ha_devd_rules")

    assert (function, rule_file["name"]) == ("file.managed", "/usr/local/etc/devd/proxysql-ha.conf")
    (header, matches, action), = devd_rules(rule_file["contents"])
    for shared_header, shared_matches, shared_action in shared:
        assert header == shared_header
        assert (matches["system"], matches["subsystem"]) == (shared_matches["system"], shared_matches["subsystem"])
        assert re.fullmatch(matches["type"], shared_matches["type"])  # devd anchors each match
        assert shlex.split(action.split("2>&1")[0]) == [hook, *shlex.split(shared_action)[1:]]
    assert re.fullmatch(matches["type"], "INIT") and not re.fullmatch(matches["type"], "MASTERX")


def test_freebsd_hook_path_in_devd_is_the_wrapper_that_files_installs(render):
    _, rule_file = args(render("carp", "FreeBSD"), "proxysql_ha_devd_rules")
    (_, _, action), = devd_rules(rule_file["contents"])

    wrappers = by_name(render("files", "FreeBSD"))

    assert shlex.split(action)[0] in wrappers


def exec_start(unit):
    """The ucarp unit's ExecStart: ``(program, {--option: value or True})``."""
    line, = (line for line in unit.splitlines() if line.startswith("ExecStart="))
    program, *options = shlex.split(line.removeprefix("ExecStart="))
    return program, dict((option.split("=", 1) + [True])[:2] for option in options)


def test_linux_renders_ucarp_calling_the_up_and_down_wrappers_with_a_passfile(render, pillar):
    libexec, etc = pillar["formula"]["libexec_dir"], pillar["formula"]["etc_dir"]

    rendered = render("carp")

    _, passfile = args(rendered, "proxysql_ha_ucarp_passfile")
    _, unit = args(rendered, "proxysql_ha_ucarp_unit")
    program, options = exec_start(unit["contents"])
    assert (passfile["name"], passfile["mode"], passfile["contents_pillar"], passfile["show_changes"]) == (
        f"{etc}/ucarp.pass", "0600", "proxysql_ha:formula:ucarp:password", False)
    assert program == "/usr/sbin/ucarp"
    assert {key: options.get(key) for key in ("--interface", "--srcip", "--vhid", "--addr", "--passfile",
                                              "--upscript", "--downscript", "--shutdown")} == {
        "--interface": "em0", "--srcip": "192.0.2.11", "--vhid": "9", "--addr": "192.0.2.50",
        "--passfile": f"{etc}/ucarp.pass", "--upscript": f"{libexec}/proxysql-ha-ucarp-up",
        "--downscript": f"{libexec}/proxysql-ha-ucarp-down", "--shutdown": True}
    assert args(rendered, "proxysql_ha_ucarp_service")[1]["watch"] == [
        {"file": "proxysql_ha_ucarp_unit"}, {"file": "proxysql_ha_ucarp_passfile"}]
    assert UCARP_PASSWORD not in repr(rendered)


@pytest.mark.parametrize("flag", ["--ucarp-up", "--ucarp-down"])
def test_ucarp_wrappers_run_the_hook_with_the_minions_python_and_their_flag(render, pillar, flag):
    libexec = pillar["formula"]["libexec_dir"]
    wrapper = f"{libexec}/proxysql-ha-{flag.removeprefix('--')}"

    function, managed = by_name(render("files"))[wrapper]

    assert (function, managed["mode"]) == ("file.managed", "0755")
    lines = [line for line in managed["contents"].splitlines() if not line.startswith("# ")]
    assert lines == [
        "#!/bin/sh", f"PROXYSQL_HA_HOOK_CONF={pillar['formula']['etc_dir']}/hook.json",
        "export PROXYSQL_HA_HOOK_CONF", f'exec {PYTHON} -S {libexec}/proxysql-ha/event.py {flag} "$@"']


def test_the_hook_wrapper_runs_the_hook_with_the_hook_json_of_etc_dir(render, pillar, tmp_path):
    """The wrapper, run by sh, hands the hook the hook.json of formula:etc_dir (not a built-in path)."""
    libexec = pillar["formula"]["libexec_dir"]
    _, managed = by_name(render("files"))[f"{libexec}/proxysql-ha-event"]
    wrapper = tmp_path / "wrapper"
    fake_hook = tmp_path / "libexec" / "proxysql-ha" / "event.py"
    fake_hook.parent.mkdir(parents=True)
    fake_hook.write_text("import os, sys\nprint(os.environ['PROXYSQL_HA_HOOK_CONF'], *sys.argv[1:])\n")
    wrapper.write_text(managed["contents"].replace(PYTHON, sys.executable))
    out = subprocess.run(["/bin/sh", str(wrapper), "MASTER", "9@em0"], capture_output=True, text=True,
                         timeout=30, check=True)
    assert out.stdout.split() == [f"{pillar['formula']['etc_dir']}/hook.json", "MASTER", "9@em0"]


def test_a_masterless_apply_without_a_minion_daemon_is_refused_at_once(render):
    for sls in ("init", "schedule"):
        rendered = render(sls, daemon_up=False)
        assert "include" not in rendered
        failing = [args(rendered, state_id) for state_id in rendered]
        assert [function for function, _ in failing] == ["test.fail_without_changes"]
        assert "running salt-minion daemon" in failing[0][1]["name"]


@pytest.mark.parametrize("missing", ["src_ip", "password"])
def test_ucarp_without_src_ip_or_password_fails_clearly_and_configures_nothing(render, pillar, missing):
    del pillar["formula"]["ucarp"][missing]

    rendered = render("carp")

    assert list(rendered) == ["proxysql_ha_ucarp"]
    function, failure = args(rendered, "proxysql_ha_ucarp")
    assert function == "test.fail_without_changes"
    assert f"proxysql_ha:formula:ucarp:{missing}" in failure["name"]


# ---- SSH trust -------------------------------------------------------------------------------


def test_ssh_authorizes_the_peer_key_for_the_receiver_only(render, pillar):
    pillar["formula"]["peer_public_key"] = PEER_KEY
    libexec, inbox = pillar["formula"]["libexec_dir"], "/var/lib/proxysql-ha/incoming"

    function, auth = args(render("ssh"), "proxysql_ha_authorized_peer")

    assert function == "ssh_auth.present"
    assert (auth["name"], auth["enc"], auth["user"]) == (PEER_KEY.split()[1], "ssh-ed25519", "proxysql-ha-test")
    assert auth["options"] == ["restrict", f'command="{PYTHON} {libexec}/proxysql-ha/receive.py --max-files 100 --max-bytes 4294967296 {inbox}"']


def test_ssh_transport_installs_the_identity_from_pillar_and_pins_the_peers_host_key(render, pillar):
    pillar["peer"] = {"transport": "ssh", "host": "192.0.2.12"}
    pillar["formula"].update(ssh_private_key=PRIVATE_KEY, peer_host_key=HOST_KEY)

    rendered = render("ssh", "FreeBSD")

    _, identity = args(rendered, "proxysql_ha_identity")
    _, known = args(rendered, "proxysql_ha_known_host")
    etc = pillar["formula"]["etc_dir"]  # the identity and known_hosts follow formula:etc_dir
    assert (identity["name"], identity["mode"], identity["contents_pillar"]) == (
        f"{etc}/id_ed25519", "0600", "proxysql_ha:formula:ssh_private_key")
    assert (known["name"], known["enc"], known["key"]) == ("192.0.2.12", "ssh-ed25519", HOST_KEY.split()[1])
    assert known["config"] == f"{etc}/known_hosts"
    assert "PRIVATE KEY" not in repr(rendered)


@pytest.mark.parametrize("peer", [{}, {"transport": "ssh", "host": "192.0.2.12"}], ids=["local", "ssh"])
def test_ssh_renders_nothing_without_keys(render, pillar, peer):
    pillar["peer"].update(peer)

    assert render("ssh") == {}


# ---- the minion: engine and schedule -----------------------------------------------------------


def test_minion_conf_runs_the_engine_with_its_spool_without_a_restart_when_told_not_to(render):
    rendered = render("minion")

    function, conf = args(rendered, "proxysql_ha_engine_conf")
    assert (function, conf["name"]) == ("file.managed", "/etc/salt/minion.d/proxysql_ha.conf")
    # the db, the jobs and the intervals come from the pillar, which the engine reads itself
    assert yaml.safe_load(conf["contents"]) == {"engines": [{"proxysql_ha": {
        "spool": "/var/lib/proxysql-ha/state/carp"}}]}
    assert list(rendered) == ["proxysql_ha_engine_conf"]


def test_minion_restart_runs_in_the_background_only_when_the_engine_conf_changed(render, pillar):
    pillar["formula"]["restart_minion"] = True

    function, restart = args(render("minion"), "proxysql_ha_restart_minion")

    assert function == "cmd.run"
    assert (restart["bg"], restart["onchanges"]) == (True, [{"file": "proxysql_ha_engine_conf"}])
    # the minion's own configuration directory, not salt-call's default /etc/salt
    assert shlex.split(restart["name"])[1:] == ["--local", "-c", os.path.dirname(MINION_CONF),
                                                "service.restart", "salt-minion"]


@pytest.mark.parametrize(("carp", "package"), [("ucarp", "ucarp"), ("keepalived", "keepalived")])
def test_the_chosen_carp_daemon_is_installed(render, pillar, carp, package):
    pillar["formula"]["carp"] = carp

    rendered = render("carp")

    installed = [a for f, a in (args(rendered, s) for s in rendered) if f == "pkg.installed"]
    assert [a["name"] for a in installed] == [package]


@pytest.mark.parametrize(("os_family", "package"), [("Debian", "mariadb-client"),
                                                     ("FreeBSD", "mariadb1011-client")])
def test_the_mysql_client_is_installed_where_the_admin_interface_is_used(render, pillar, os_family, package):
    assert render("admin", os_family) == {}  # admin:enabled is false by default: nothing to install
    pillar["admin"] = {"enabled": True}
    assert args(render("admin", os_family), "proxysql_ha_mysql_client") == ("pkg.installed", {"name": package})
    pillar["formula"]["mysql_client_package"] = "mysql84-client"
    assert args(render("admin", os_family), "proxysql_ha_mysql_client")[1] == {"name": "mysql84-client"}
    pillar["formula"]["mysql_client_package"] = None
    assert render("admin", os_family) == {}


def test_schedule_declares_every_job_with_the_arguments_of_proxysql_ha_jobs(render, pillar):
    expected = jobs(proxysql_ha_config.build(pillar, "Debian", "proxysql-a"))

    rendered = render("schedule")

    assert {state_id: args(rendered, state_id) for state_id in rendered} == {
        name: ("schedule.present", job) for name, job in expected.items()}


def test_the_hook_spools_where_the_engine_listens(render, pillar):
    _, hook_conf = args(render("files"), "proxysql_ha_hook_conf")
    _, engine_conf = args(render("minion"), "proxysql_ha_engine_conf")

    engine = yaml.safe_load(engine_conf["contents"])["engines"][0]["proxysql_ha"]
    assert hook_conf["dataset"]["spool_dir"] == engine["spool"]
    conf = proxysql_ha_config.build(pillar, "Debian", "proxysql-a")
    assert hook_conf["dataset"]["reconcile_job"] == conf["schedule"]["reconcile_job"]


# ---- the VIP follows ProxySQL's health --------------------------------------------------------


def test_freebsd_turns_carp_preemption_on_so_the_peer_takes_a_released_vip(render):
    assert args(render("carp", "FreeBSD"), "proxysql_ha_carp_preempt") == (
        "sysctl.present", {"name": "net.inet.carp.preempt", "value": 1})


def test_ucarp_unit_writes_the_pid_file_the_module_signals_without_pillar_text_in_the_shell(render, pillar):
    pillar["health"] = {"ucarp_pidfile": "/run/test-ucarp.pid"}

    unit = args(render("carp"), "proxysql_ha_ucarp_unit")[1]["contents"]

    post, = (line for line in unit.splitlines() if line.startswith("ExecStartPost="))
    argv = shlex.split(post.removeprefix("ExecStartPost="))
    assert argv == ["/bin/sh", "-c", 'echo "$$MAINPID" > "$$1"', "proxysql-ha-ucarp-pid", "/run/test-ucarp.pid"]
    assert "ExecStopPost=/bin/rm -f /run/test-ucarp.pid" in unit.splitlines()


def test_keepalived_gets_a_track_file_that_a_highstate_never_resets(render, pillar):
    pillar["formula"]["carp"] = "keepalived"
    pillar["health"] = {"keepalived_track_file": "/var/lib/proxysql-ha/proxysql-down"}

    function, track = args(render("carp"), "proxysql_ha_keepalived_track_file")

    assert function == "file.managed"
    assert (track["name"], track["contents"], track["replace"], track["mode"]) == (
        "/var/lib/proxysql-ha/proxysql-down", "0", False, "0644")


def test_without_the_health_rule_no_preemption_nor_track_file(render, pillar):
    pillar["health"] = {"enabled": False}
    assert "proxysql_ha_carp_preempt" not in render("carp", "FreeBSD")
    pillar["formula"]["carp"] = "keepalived"
    assert "proxysql_ha_keepalived_track_file" not in render("carp")
