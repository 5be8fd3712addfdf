import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import {filterHistory, parseHistory, verifiedRevisionOf, type HistoryEvent} from '../../../src/core/history.js'
import {verifyExtension, type ProbeResponse} from '../../../src/core/verify-extension.js'

const BASE = 'https://connect.example/content/g/_bundle7/'
function probe(
  answers: Record<string, ProbeResponse>,
  seen: Array<{url: string; headers: Record<string, string>}> = [],
) {
  return {
    async get(url: string, headers: Record<string, string>) {
      seen.push({url, headers})
      const path = url.slice(BASE.length).split('?')[0]
      if (!answers[path]) throw new Error('connection refused')
      return answers[path]
    },
  }
}
const healthy = {
  health: {status: 200, body: 'OK'},
  version: {status: 200, body: '3.17.2'},
  'api/2.0/mlflow/experiments/search': {status: 200, body: '{}'},
  '_mlflowctl/status': {status: 200, body: JSON.stringify({dbRevision: 'dc11669786a5', expectedHead: 'dc11669786a5'})},
}
const options = {baseUrl: BASE, apiKey: 'key-1234', opsToken: 'ops-5678', expectedMlflowVersion: '3.17.2'}

describe('verifyExtension', () => {
  it('passes a healthy extension and sends Key auth plus the ops token', async () => {
    const seen: Array<{url: string; headers: Record<string, string>}> = []
    const result = await verifyExtension(probe(healthy, seen), options)
    assert.equal(result.ok, true)
    assert.equal(result.revision, 'dc11669786a5')
    assert.ok(seen.every((call) => call.headers.Authorization === 'Key key-1234'))
    assert.equal(
      seen.find((call) => call.url.endsWith('_mlflowctl/status'))!.headers['X-Mlflowctl-Ops-Token'],
      'ops-5678',
    )
  })

  for (const [label, override, failing] of [
    ['a wrong version', {version: {status: 200, body: '3.16.0'}}, 'version'],
    ['a failing REST call', {'api/2.0/mlflow/experiments/search': {status: 403, body: ''}}, 'rest'],
    [
      'pending migrations',
      {'_mlflowctl/status': {status: 200, body: JSON.stringify({dbRevision: 'aaa', expectedHead: 'bbb'})}},
      'schema',
    ],
    ['an ops endpoint that is not JSON', {'_mlflowctl/status': {status: 200, body: '<html>'}}, 'schema'],
  ] as const) {
    it(`fails on ${label}`, async () => {
      const result = await verifyExtension(probe({...healthy, ...override}), options)
      assert.equal(result.ok, false)
      assert.deepEqual(
        result.checks.filter((c) => !c.ok).map((c) => c.id),
        [failing],
      )
    })
  }

  it('reports an unreachable extension without throwing', async () => {
    const result = await verifyExtension(probe({}), options)
    assert.equal(result.ok, false)
    assert.match(result.checks[0].detail, /answered nothing/)
  })
})

describe('history', () => {
  const event = (over: Partial<HistoryEvent>): HistoryEvent => ({
    v: 1,
    time: '2026-01-01T00:00:00Z',
    action: 'deploy',
    result: 'ok',
    server: 's',
    guid: 'g',
    ...over,
  })
  it('skips torn or foreign lines and sorts by time', () => {
    const text = [
      JSON.stringify(event({time: '2026-01-02T00:00:00Z', bundleId: '2'})),
      '{"torn',
      JSON.stringify({v: 9}),
      JSON.stringify(event({bundleId: '1'})),
    ].join('\n')
    assert.deepEqual(
      filterHistory(parseHistory(text)).map((e) => e.bundleId),
      ['1', '2'],
    )
  })

  it('finds the revision a bundle was last verified at, ignoring failures and other content', () => {
    const events = [
      event({bundleId: '1', revision: 'r1', mlflowVersion: '2.22.5'}),
      event({bundleId: '1', revision: 'rX', result: 'failed'}),
      event({bundleId: '1', revision: 'rOther', guid: 'other'}),
    ]
    assert.deepEqual(verifiedRevisionOf(events, 'g', '1'), {revision: 'r1', mlflowVersion: '2.22.5'})
    assert.equal(verifiedRevisionOf(events, 'g', '2'), undefined)
  })
})
