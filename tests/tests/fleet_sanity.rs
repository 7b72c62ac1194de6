//! `ansible-test sanity` on the collection `netbridge.netbridge`
//! (fleet/collections/), with the ansible-core the fleet tests use: every
//! sanity test runs and passes, none is skipped. Needs no network but PyPI
//! (see netbridge_tests::fleet::sanity); the first run on a machine builds
//! ansible-test's per-test venvs (minutes), later runs reuse them.

use std::time::Duration;

use netbridge_tests::fleet::require_sanity;
use netbridge_tests::fleet::sanity::{Defect, Scope};

/// The first run installs about ten pinned tools from PyPI into venvs of
/// their own, on a slow, shared machine.
const SANITY_TIMEOUT: Duration = Duration::from_secs(1800);

/// The tests that matter most for a module; each must have run.
const EXPECTED: [&str; 9] = [
    "ansible-doc",
    "compile",
    "import",
    "pep8",
    "pylint",
    "runtime-metadata",
    "shebang",
    "validate-modules",
    "yamllint",
];

#[test]
fn the_collection_passes_every_ansible_test_sanity_test() {
    let Some(run) = require_sanity(SANITY_TIMEOUT, &Scope::default()) else {
        return;
    };
    eprintln!("ansible-test sanity took {:.0?}", run.took);
    assert!(
        run.status.success(),
        "ansible-test sanity: {}\n{}",
        run.status,
        run.output
    );
    let ran = run.tests_run();
    for test in EXPECTED {
        assert!(ran.contains(&test), "{test} ran: {ran:?}\n{}", run.output);
    }
    assert!(
        run.skipped().is_empty(),
        "none skipped: {:?}",
        run.skipped()
    );
    assert!(!run.output.contains("ERROR:"), "{}", run.output);
}

/// The run above would pass on a collection it never looked at, too: the
/// same run, on a copy whose module takes an option its documentation does
/// not list, fails and names it.
#[test]
fn a_module_option_left_undocumented_fails_the_sanity_run() {
    let scope = Scope {
        only: &["validate-modules"],
        defect: Some(Defect {
            file: "plugins/modules/netbridge.py",
            after: "argument_spec=dict(",
            insert: "            undocumented_option=dict(type=\"str\"),",
        }),
    };
    let Some(run) = require_sanity(SANITY_TIMEOUT, &scope) else {
        return;
    };
    assert!(!run.status.success(), "the run fails:\n{}", run.output);
    assert_eq!(run.tests_run(), ["validate-modules"], "{}", run.output);
    assert!(
        run.output.contains("undocumented-parameter") && run.output.contains("undocumented_option"),
        "validate-modules names the option:\n{}",
        run.output
    );
}
