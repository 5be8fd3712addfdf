// `storage report` and `gc` where the extension runs them: GET /_mlflowctl/storage and POST /_mlflowctl/gc (its
// answer a stream of JSON lines), on a deployment through Connect or on a dev instance's loopback proxy.
import {createInterface} from 'node:readline'

import type {GcEvent, GcResultEvent} from '../../core/extension-contract.js'
import {parseGcEvent, parseStorageReport} from '../../core/extension-contract.js'
import type {GcRequest, StorageSite} from '../../core/storage.js'
import {ExternalError} from '../../errors.js'
import {refusal, type OpsEndpoint} from '../connect/ops-client.js'
import {open} from '../connect/http.js'

/** A report lists the artifact store; a gc streams a line per batch, so this is the longest silence allowed. */
const IDLE_MS = 10 * 60_000

export function opsStorageSite(endpoint: OpsEndpoint, location: string): StorageSite {
  const request = (method: 'GET' | 'POST', route: string, headers: Record<string, string> = {}) =>
    open({
      method,
      url: new URL(`_mlflowctl/${route}`, endpoint.contentUrl),
      headers: {...endpoint.headers, ...headers},
      timeoutMs: IDLE_MS,
      ca: endpoint.ca,
      insecure: endpoint.insecure,
    })
  return {
    location,
    async report() {
      const response = await request('GET', 'storage')
      if (response.status !== 200) throw await refusal(response.status, response.body, `Storage report of ${location}`)
      let text = ''
      for await (const chunk of response.body) text += String(chunk)
      return parseStorageReport(text, `The storage report of ${location}`)
    },
    async gc(options: GcRequest, onEvent: (event: GcEvent) => void) {
      const response = await request('POST', 'gc', {'X-Mlflowctl-Gc': JSON.stringify(options)})
      if (response.status !== 200) throw await refusal(response.status, response.body, `gc of ${location}`)
      return readGcEvents(createInterface({input: response.body, crlfDelay: Infinity}), onEvent, location)
    },
  }
}

/** Hands each line's event on and returns the result; a stream that ends without one was cut off. */
export async function readGcEvents(
  lines: AsyncIterable<string>,
  onEvent: (event: GcEvent) => void,
  location: string,
): Promise<GcResultEvent> {
  let result: GcResultEvent | undefined
  try {
    for await (const line of lines) {
      if (!line.trim()) continue
      const event = parseGcEvent(line, `A gc line from ${location}`)
      onEvent(event)
      if (event.event === 'error')
        throw new ExternalError('GC_FAILED', `gc of ${location} stopped: ${event.message}`, {
          suggestions: [
            'What was deleted before the error stays deleted; run gc again to go on (a dry run shows what is left).',
          ],
        })
      if (event.event === 'result') result = event
    }
  } catch (error) {
    if (error instanceof ExternalError) throw error
    throw new ExternalError('GC_FAILED', `gc of ${location} was cut off: ${(error as Error).message}.`, {
      suggestions: ['Run gc again: each batch is whole, and files a cut left behind are orphans that --orphans takes.'],
    })
  }
  if (!result)
    throw new ExternalError('GC_FAILED', `gc of ${location} ended without a result: the connection was cut.`, {
      suggestions: ['Run gc again: each batch is whole, and files a cut left behind are orphans that --orphans takes.'],
    })
  return result
}
