#!/bin/bash
# tests/run.sh itself: a run that skipped tests, or ran none, is not a
# pass.  As a non-root user every end-to-end test is skipped: run.sh must
# exit non-zero and say so in its closing line, unless T_ALLOW_SKIP accepts
# those skips; a pattern matching no test fails too.
. "$(dirname "$0")/../lib/common.sh"
t_start
unset T_ALLOW_SKIP # make check sets it for its own run

# A build dir the unprivileged user can write its logs into, with the
# binary (run.sh only checks it is there and executable).
B=$(mktemp -d /tmp/cft-runner.XXXX)
chmod 755 "$B"
cp "$CERTFLEET" "$B/certfleet"
chown -R 65534:65534 "$B"
trap 'rm -rf "$B"; t_cleanup' EXIT
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups env BUILD="$B" "$@"; }

t_step "not root: the selected e2e test is skipped, and the run fails"
assert_exit 1 as_nobody sh "$T_ROOT/tests/run.sh" t-deploy-healthy
assert_match "$(cat "$T_OUT")" "SKIP e2e/t-deploy-healthy \(needs root" "the skip is reported with its reason"
assert_eq "$(tail -n 1 "$T_OUT")" "0 passed, 0 failed, 1 skipped" "closing line counts the skip"
assert_match "$(cat "$T_OUT")" "skipped tests fail the run" "the output says why it failed"

t_step "T_ALLOW_SKIP=1 or naming the test accepts the skip"
assert_exit 0 as_nobody T_ALLOW_SKIP=1 sh "$T_ROOT/tests/run.sh" t-deploy-healthy
assert_eq "$(tail -n 1 "$T_OUT")" "0 passed, 0 failed, 1 skipped" "closing line still counts it"
assert_exit 0 as_nobody T_ALLOW_SKIP=t-deploy-healthy sh "$T_ROOT/tests/run.sh" t-deploy-healthy
assert_exit 1 as_nobody T_ALLOW_SKIP=t-other sh "$T_ROOT/tests/run.sh" t-deploy-healthy

t_step "a pattern that selects nothing fails"
assert_exit 1 env BUILD="$B" sh "$T_ROOT/tests/run.sh" no-such-test-name
assert_eq "$(tail -n 1 "$T_OUT")" "0 passed, 1 failed, 0 skipped" "closing line"

t_step "a passing selection passes, with all three counts"
assert_exit 0 env BUILD="$B" sh "$T_ROOT/tests/run.sh" playbook/
assert_match "$(tail -n 1 "$T_OUT")" "^[1-9][0-9]* passed, 0 failed, 0 skipped$" "closing line"
t_done
