// Doctor checks of one layer: the local MLflow client.
import semver from 'semver'
import type {CheckDefinition, Results} from './runner.js'
import {pass, warn, type DoctorContext} from './context.js'

export const clientChecks: CheckDefinition<DoctorContext>[] = [
  {
    id: 'client.mlflow',
    category: 'client',
    title: 'Local MLflow client version',
    async run(ctx, results: Results) {
      const local = await ctx.probes.localMlflowVersion()
      if (!local) return pass('no mlflow Python package found here (nothing to compare)')
      const server = ctx.facts.ops?.mlflowVersion ?? results.get('mlflow.version')?.detail.match(/MLflow (\S+)/)?.[1]
      if (!server) return pass(`mlflow ${local} (server version unknown)`)
      const [l, s] = [semver.coerce(local), semver.coerce(server)]
      if (l && s && l.major !== s.major)
        return warn(
          `client mlflow ${local}, server ${server}: different major versions`,
          `Install a client of the server's line: pip install "mlflow==${server}".`,
        )
      if (l && s && semver.gt(l, s))
        return warn(
          `client mlflow ${local} is newer than the server (${server}): newer clients may call APIs the server lacks`,
          `Pin the client: pip install "mlflow==${server}", or upgrade the server (mlflowctl upgrade).`,
        )
      return pass(`client mlflow ${local}, server ${server}`)
    },
    needs: ['mlflow.version'],
  },
]
