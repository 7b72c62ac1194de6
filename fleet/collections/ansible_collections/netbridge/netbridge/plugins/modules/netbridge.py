#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: netbridge developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: netbridge
short_description: Bring a host's bridges to its netbridge configuration, with confirmed commits
version_added: "0.1.0"
description:
  - Runs C(netbridge) on the host, which converts uplinks into Linux bridges
    (and creates NAT or host-only networks) through NetworkManager, proves each
    change with checks and rolls it back by itself when they fail.
  - C(state=applied) runs C(netbridge apply). In check mode it runs
    C(netbridge apply --dry-run) and reports what would change; with C(--diff)
    it shows the difference.
  - With O(confirm_timeout), a change that passed its checks stays on trial
    (nothing on disk) for that many seconds. C(state=confirmed), run over a
    B(new) connection to the host, commits it; without it the host rolls back
    by itself. C(state=rolled_back) undoes it at once.
  - C(changed) is true only when the host changed (or, in check mode, would).
options:
  state:
    description:
      - V(applied) brings the host to its configuration.
      - V(confirmed) commits the change that O(confirm_timeout) left on trial;
        nothing to confirm is not an error (C(changed=false)).
      - V(rolled_back) undoes the change left on trial; nothing to undo is
        not an error (C(changed=false)).
    type: str
    choices: [applied, confirmed, rolled_back]
    default: applied
  config:
    description:
      - The configuration file on the host (or a directory with
        C(netbridge.toml) and C(conf.d/)).
    type: path
    default: /etc/netbridge/netbridge.toml
  confirm_timeout:
    description:
      - With O(state=applied), keep a proven change on trial for this many
        seconds until O(state=confirmed) commits it (C(netbridge apply --confirm)).
      - Between 5 and 3600.
    type: int
  executable:
    description:
      - The netbridge binary on the host.
    type: str
    default: netbridge
attributes:
  check_mode:
    description: Runs C(netbridge apply --dry-run) and reports what would change; changes nothing.
    support: full
  diff_mode:
    description: Shows what would change (or changed), per bridge, as netbridge's plan.
    support: full
notes:
  - "Confirm over a new connection (C(meta: reset_connection) first): reaching the
    host is what the confirmation proves."
author:
  - netbridge developers (@netbridge)
"""

EXAMPLES = r"""
- name: Apply /etc/netbridge, committed at once
  netbridge.netbridge.netbridge:

- name: Apply, and keep the change on trial for two minutes
  netbridge.netbridge.netbridge:
    confirm_timeout: 120
  register: applied

- name: Reconnect, so the confirmation travels a new connection
  ansible.builtin.meta: reset_connection

- name: Commit it over the new connection
  netbridge.netbridge.netbridge:
    state: confirmed
  when: applied.awaiting_confirm
"""

RETURN = r"""
result:
  description: netbridge's result word (applied, dry-run, awaiting-confirm, committed, rolled-back, nothing, ...).
  returned: always
  type: str
  sample: awaiting-confirm
exit_code:
  description: netbridge's exit status (0 success, 3 rolled back, 9 awaiting confirmation; see C(netbridge --help)).
  returned: always
  type: int
  sample: 9
awaiting_confirm:
  description: Whether a change is on trial and needs O(state=confirmed).
  returned: always
  type: bool
  sample: true
bridges:
  description: Per configured bridge, netbridge's result and reason (O(state=applied)).
  returned: when state is applied
  type: list
  elements: dict
  sample: [{"name": "br0", "result": "committed", "reason": null}]
report:
  description: The whole JSON document netbridge printed.
  returned: when netbridge printed one
  type: dict
"""

import json

from ansible.module_utils.basic import AnsibleModule

# netbridge's exit statuses this module tells apart.
EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_AWAITING_CONFIRM = 9

# A bridge in these results changed the host (or, dry, would).
CHANGING = ("committed", "awaiting-confirm", "dry-run")


def run_netbridge(module, args):
    """Runs netbridge with --json; returns (rc, document or None, stderr)."""
    argv = [module.params["executable"]] + args + ["--json"]
    rc, out, err = module.run_command(argv)
    try:
        doc = json.loads(out) if out.strip() else None
    except ValueError:
        doc = None
    return rc, doc, err


def failure(module, what, rc, doc, err, result):
    reason = (doc or {}).get("error") or err.strip() or "no output"
    bad = [
        "%s %s: %s" % (b.get("name"), b.get("result"), b.get("reason") or "no reason given")
        for b in (doc or {}).get("bridges") or []
        if b.get("result") not in ("committed", "unchanged", "dry-run", "awaiting-confirm")
    ]
    detail = "; ".join(bad) or reason
    module.fail_json(msg="netbridge %s failed (exit %d): %s" % (what, rc, detail), **result)


def describe(bridge):
    """A changing bridge for --diff: what, then the equivalent nmcli commands."""
    lines = ["%s: %s" % (bridge.get("name"), bridge.get("reason") or bridge.get("result"))]
    lines += ["  %s" % command for command in bridge.get("nmcli") or []]
    return "\n".join(lines) + "\n"


def apply(module):
    args = ["apply", "--config", module.params["config"]]
    if module.check_mode:
        args.append("--dry-run")
    elif module.params["confirm_timeout"] is not None:
        args += ["--confirm", str(module.params["confirm_timeout"])]
    rc, doc, err = run_netbridge(module, args)
    bridges = (doc or {}).get("bridges") or []
    awaiting = rc == EXIT_AWAITING_CONFIRM
    result = dict(
        changed=any(b.get("result") in CHANGING for b in bridges),
        result=(doc or {}).get("result", "error"),
        exit_code=rc,
        awaiting_confirm=awaiting,
        bridges=[dict(name=b.get("name"), result=b.get("result"), reason=b.get("reason")) for b in bridges],
    )
    if doc is not None:
        result["report"] = doc
    if module._diff:
        result["diff"] = dict(prepared="".join(describe(b) for b in bridges if b.get("result") in CHANGING))
    if rc not in (EXIT_OK, EXIT_AWAITING_CONFIRM):
        failure(module, "apply", rc, doc, err, result)
    module.exit_json(**result)


def pending(module):
    """Whether a change awaits confirmation (read-only, for check mode)."""
    rc, doc, err = run_netbridge(module, ["status"])
    if rc != EXIT_OK or doc is None:
        module.fail_json(msg="netbridge status failed (exit %d): %s" % (rc, err.strip()))
    change = doc.get("unfinished_change") or {}
    return change.get("phase") == "awaiting-confirm"


def finish(module, verb):
    """state=confirmed (confirm) or state=rolled_back (rollback)."""
    if module.check_mode:
        awaiting = pending(module)
        module.exit_json(changed=awaiting, result="dry-run", exit_code=EXIT_OK, awaiting_confirm=awaiting)
    rc, doc, err = run_netbridge(module, [verb])
    result = dict(
        changed=rc == EXIT_OK,
        result=(doc or {}).get("result", "error"),
        exit_code=rc,
        awaiting_confirm=False,
    )
    if doc is not None:
        result["report"] = doc
    if rc == EXIT_BAD_INPUT and "no change awaits confirmation" in ((doc or {}).get("error") or ""):
        result.update(changed=False, result="nothing")
        module.exit_json(**result)
    if rc != EXIT_OK:
        failure(module, verb, rc, doc, err, result)
    module.exit_json(**result)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", default="applied", choices=["applied", "confirmed", "rolled_back"]),
            config=dict(type="path", default="/etc/netbridge/netbridge.toml"),
            confirm_timeout=dict(type="int"),
            executable=dict(type="str", default="netbridge"),
        ),
        supports_check_mode=True,
    )
    state = module.params["state"]
    if state == "applied":
        apply(module)
    elif state == "confirmed":
        finish(module, "confirm")
    else:
        finish(module, "rollback")


if __name__ == "__main__":
    main()
