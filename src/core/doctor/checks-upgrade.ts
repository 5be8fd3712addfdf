// Doctor checks of one layer: an upgrade from this machine that stopped half-way (its intent record is here).
import {describeInterrupted} from '../upgrade-intent.js'
import type {CheckDefinition} from './runner.js'
import {fail, pass, type DoctorContext} from './context.js'

export const upgradeChecks: CheckDefinition<DoctorContext>[] = [
  {
    id: 'upgrade.unfinished',
    category: 'connect',
    title: 'No upgrade stopped half-way',
    needs: ['connect.content'],
    async run(ctx) {
      const guid = ctx.facts.content!.guid
      const intent = await ctx.probes.unfinishedUpgrade(guid)
      if (!intent) return pass('no unfinished upgrade recorded on this machine')
      const found = describeInterrupted(intent, {
        activeBundleId: ctx.facts.content!.bundleId,
        revision: ctx.facts.ops?.dbRevision ?? undefined,
      })
      return fail(found.summary, `Run: ${found.next[0]}${found.next[1] ? ` (or ${found.next[1]})` : ''}`)
    },
  },
]
