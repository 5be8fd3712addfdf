/** Interfaces that core/ needs from the outside world; adapters implement them. */

/** Runs named steps and shows progress; the base command supplies a listr2 runner, tests an inline one. */
export interface StepRunner {
  step<T>(title: string, action: (report: (detail: string) => void) => Promise<T>): Promise<T>
}

/** A StepRunner that just runs the steps (tests, --json). */
export const inlineStepRunner: StepRunner = {
  step: (_title, action) => action(() => {}),
}
