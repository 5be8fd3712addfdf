// Doctor checks of one layer: a local instance started by `mlflowctl dev up` (doctor --dev), in place of Connect.
import type {CheckDefinition} from './runner.js'
import {pass, fail, type DoctorContext} from './context.js'

/** The check every later layer needs, as connect.content is for a deployment: it finds where the instance answers. */
export const DEV_INSTANCE_CHECK = 'dev.instance'

export const devChecks: CheckDefinition<DoctorContext>[] = [
  {
    id: DEV_INSTANCE_CHECK,
    category: 'dev',
    title: 'The dev instance runs',
    async run(ctx) {
      const {bundleDir, phase, running} = ctx.input.dev!
      if (!running) {
        const why = phase === 'failed' ? `; it failed to start, mlflowctl dev logs ${bundleDir} says why` : ''
        return fail(`not running (${phase})`, `Start it: mlflowctl dev up ${bundleDir}${why}.`)
      }
      ctx.facts.content = {
        guid: running.guid,
        name: bundleDir,
        appMode: running.appMode,
        locked: false,
        minProcesses: 1,
        bundleId: null,
        contentUrl: `${running.trackingUri}/`,
      }
      return pass(
        `MLflow ${running.mlflowVersion} (${running.appMode}) at ${running.trackingUri}, supervisor pid ${running.supervisorPid}`,
      )
    },
  },
]
