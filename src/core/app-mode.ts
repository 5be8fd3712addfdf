/** Which app mode an in-place upgrade serves, and why. Pure. */
import type {PlanFinding} from './upgrade-plan.js'
import {appModeFor, type AppMode} from './versions.js'

/**
 * Connect cannot change a deployed item's app mode (error 48), so the content keeps the
 * mode of its first bundle: python-api content on MLflow 3.3+ serves the FastAPI app through a2wsgi, and
 * python-fastapi content cannot go below 3.3 (no FastAPI app there).
 */
export function servedAppMode(
  deployed: string,
  targetVersion: string,
): {appMode: string; reason: string; blocker?: PlanFinding} {
  const natural: AppMode = appModeFor(targetVersion)
  if (deployed === natural)
    return {
      appMode: deployed,
      reason: `${deployed} is MLflow ${targetVersion}'s own mode, and the content already runs in it`,
    }
  if (deployed === 'python-api') {
    return {
      appMode: deployed,
      reason: `kept: the content was first deployed as python-api and Connect cannot change a deployed item's app mode; MLflow ${targetVersion}'s FastAPI app (every route) is served through the a2wsgi bridge`,
    }
  }
  return {
    appMode: deployed,
    reason: `the content runs as ${deployed}, which MLflow ${targetVersion} cannot serve`,
    blocker: {
      code: 'APP_MODE_UNSUPPORTED',
      message: `The content runs as ${deployed}; MLflow ${targetVersion} has no FastAPI app (it arrived in 3.3.0) and Connect cannot change the app mode: deploy ${targetVersion} as new content and restore a backup into it.`,
    },
  }
}
