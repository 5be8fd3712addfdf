// Doctor checks of one layer: the database: reachability and schema.
import {joinKey} from '../artifact-url.js'
import type {CheckDefinition} from './runner.js'
import {pass, warn, fail, type DoctorContext} from './context.js'

export const databaseChecks: CheckDefinition<DoctorContext>[] = [
  {
    id: 'database.connect',
    category: 'database',
    title: 'Database reachable and authenticated from here',
    unless: (ctx) => (ctx.input.database ? undefined : 'only with --db URL'),
    async run(ctx) {
      const target = ctx.input.database!
      if (target.engine !== 'postgresql')
        return warn(`${target.engine} is not checked from here yet`, 'Check it with your database client.')
      try {
        const probe = await ctx.probes.probeDatabase(target)
        const revision = probe.alembicRevision
          ? `alembic revision ${probe.alembicRevision}`
          : 'no alembic_version table (not an MLflow database yet)'
        const expected = ctx.facts.ops?.expectedHead
        if (expected && probe.alembicRevision && probe.alembicRevision !== expected)
          return warn(
            `logged in as ${probe.user} (PostgreSQL ${probe.serverVersion}); ${revision}, the extension expects ${expected}`,
            'See extension.schema.',
          )
        return pass(`logged in as ${probe.user} (PostgreSQL ${probe.serverVersion}, auth ${target.auth}); ${revision}`)
      } catch (error) {
        const suggestions = (error as {suggestions?: string[]}).suggestions ?? []
        const outcome = fail(
          (error as Error).message,
          suggestions[0] ?? 'Check the URL, the network path and the credentials.',
        )
        // The same exit code as db status and backup for a refused login (DATABASE_AUTH_FAILED: 4).
        return (error as {code?: string}).code === 'DATABASE_AUTH_FAILED' ? {...outcome, exit: 4} : outcome
      }
    },
  },
  {
    id: 'database.artifacts',
    category: 'database',
    title: 'Artifact store reachable from here',
    unless: (ctx) => (ctx.input.artifacts ? undefined : 'only with --artifacts URL'),
    async run(ctx) {
      const location = ctx.input.artifacts!
      const store = await ctx.probes.objectStore(location)
      let info
      try {
        info = await store.describe()
      } catch (error) {
        return fail(
          `${location.display}: ${(error as Error).message}`,
          'Check the credentials this machine uses for the store (AWS/Azure/Google SDK configuration) and that they may list the bucket or container.',
        )
      }
      const kind = location.scheme === 'wasbs' ? 'container' : 'bucket'
      if (!info.exists)
        return fail(
          `the ${kind} ${location.bucket} does not exist`,
          `Create it (in the server's region), or fix MLFLOW_ARTIFACTS_DESTINATION on the content.`,
        )
      const where = info.region ? ` in ${info.region}` : ''
      if (location.scheme === 's3' && info.region && ctx.input.awsRegion && info.region !== ctx.input.awsRegion) {
        return warn(
          `the bucket is in ${info.region}, but AWS_REGION is ${ctx.input.awsRegion}`,
          `Set AWS_REGION=${info.region} (on the content and here): S3 requests signed for another region are redirected or refused.`,
        )
      }
      if (!ctx.input.deep) return pass(`the ${kind} ${location.bucket} exists${where}`)
      // The store is rooted at the URL's prefix; messages name the object's full key.
      const key = `mlflowctl-doctor/${ctx.probes.newId()}.txt`
      const shown = joinKey(location, key)
      const payload = Buffer.from(`mlflowctl doctor probe ${new Date(ctx.probes.now()).toISOString()}`)
      try {
        await store.put(key, payload)
        const read = await store.get(key)
        await store.delete(key)
        if (!read.equals(payload))
          return fail(
            `${shown} read back different bytes`,
            'Check the store for a proxy or policy that rewrites objects.',
          )
      } catch (error) {
        return fail(
          `write/read/delete of ${shown} failed: ${(error as Error).message}`,
          'The credentials here may list but not write, read or delete: check the bucket policy or role assignment.',
        )
      }
      return pass(`the ${kind} ${location.bucket} exists${where}; a probe object was written, read back and deleted`)
    },
  },
]
