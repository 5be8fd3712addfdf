/**
 * `backup recover`: settles what an interrupted restore left in a target. Without a choice it does what the next
 * backup or restore would do (finish a committed swap, undo one whose target nobody touched since) and reports it;
 * a target that was written to after the kill needs the operator's choice: keep what is in place (`live`), or put
 * the previous data back (`previous`). Whichever version is not kept is moved aside, never deleted.
 */
import {describeTarget, type RestoreTarget} from './restore.js'

/** Which version of an interrupted restore's target stays: what is in place now, or the data from before it. */
export type KeepChoice = 'live' | 'previous'

export interface RecoverOptions {
  target: RestoreTarget
  artifactsTo?: string
  keep?: KeepChoice
}

export interface RecoverResult {
  target: string
  /** What was done, one sentence each; empty when nothing was left to settle. */
  actions: string[]
}

export interface RecoverDeps {
  /** @throws ExternalError TARGET_LOCKED while a restore or backup works there */
  lockTarget(target: RestoreTarget, artifactsTo?: string): Promise<() => Promise<void>>
  /** @throws ExternalError RECOVERY_CONFLICT when the target was written to since and `keep` is not given */
  recover(target: RestoreTarget, artifactsTo?: string, keep?: KeepChoice): Promise<string[]>
}

/** Finishes, undoes or (with `keep`) settles interrupted restores of the target, under its lock. */
export async function recoverRestore(deps: RecoverDeps, options: RecoverOptions): Promise<RecoverResult> {
  const release = await deps.lockTarget(options.target, options.artifactsTo)
  try {
    const actions = await deps.recover(options.target, options.artifactsTo, options.keep)
    return {target: describeTarget(options.target), actions}
  } finally {
    await release()
  }
}
