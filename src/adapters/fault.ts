// A test hook for the fault suite (test/integration/backup-faults*.test.ts): MLFLOWCTL_FAULT_AT=<step> makes the
// process SIGKILL itself when it reaches that named step, so a test can stop create or restore at every step and
// check what the next run finds. Unset (always, outside the tests), it does nothing.

/** Kills this process at once when MLFLOWCTL_FAULT_AT names this step. */
export function faultPoint(step: string): void {
  if (process.env.MLFLOWCTL_FAULT_AT === step) process.kill(process.pid, 'SIGKILL')
}
