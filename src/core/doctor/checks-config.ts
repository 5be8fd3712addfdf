// Doctor checks of one layer: the configuration: server, API key, CA, profile.
import type {CheckDefinition} from './runner.js'
import {pass, fail, type DoctorContext} from './context.js'

export const configChecks: CheckDefinition<DoctorContext>[] = [
  {
    id: 'config.server',
    category: 'config',
    title: 'Connect server',
    async run(ctx) {
      const {value, source} = ctx.input.server
      if (!value)
        return fail(
          'no Connect server given',
          'Pass --server https://connect.example.com, set CONNECT_SERVER, or add it to a profile.',
        )
      try {
        const url = new URL(value)
        if (!['http:', 'https:'].includes(url.protocol)) throw new Error('scheme')
      } catch {
        return fail(
          `"${value}" is not an http(s) URL (from ${source})`,
          'Use the URL you open Connect with, e.g. https://connect.example.com.',
        )
      }
      return pass(`${value} (from ${source}, profile ${ctx.input.profile})`)
    },
  },
  {
    id: 'config.api-key',
    category: 'config',
    title: 'API key',
    async run(ctx) {
      const {value, source} = ctx.input.apiKey
      if (!value)
        return fail(
          'no API key given',
          'Set CONNECT_API_KEY (preferred over --api-key, which other users can see in the process list).',
        )
      return pass(`set (from ${source}, value masked)`)
    },
  },
  {
    id: 'config.guid',
    category: 'config',
    title: 'Content GUID',
    async run(ctx) {
      const {value, source} = ctx.input.guid
      if (!value)
        return fail(
          'no content GUID given, and no deployment record found',
          'Pass --guid GUID, or run doctor from (or with) the bundle directory you deployed.',
        )
      return pass(`${value} (from ${source})`)
    },
  },
]
