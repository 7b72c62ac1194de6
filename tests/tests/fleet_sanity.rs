//! `ansible-test sanity` on the collection `netbridge.netbridge`
//! (fleet/collections/), with the ansible-core the fleet tests use: every
//! sanity test runs and passes, none is skipped. Needs no network but PyPI
//! (see netbridge_tests::fleet::sanity); the first run on a machine builds
//! ansible-test's per-test venvs (minutes), later runs reuse them.

use std::time::Duration;

use netbridge_tests::fleet::require_sanity;

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
    let Some(run) = require_sanity(SANITY_TIMEOUT) else {
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
