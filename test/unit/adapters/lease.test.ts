// Leases decide whether the run behind a lock or a scratch directory is alive, on real files: a holder on another
// host by its heartbeat, one on this host by its process (and that process's start, against PID reuse).
import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {mkdirSync, readFileSync, utimesSync, writeFileSync} from 'node:fs'
import {mkdtemp} from 'node:fs/promises'
import {hostname, tmpdir} from 'node:os'
import {join} from 'node:path'
import {after, describe, it} from 'node:test'

import {LOCK, lockRepo} from '../../../src/adapters/backup/repo-files.js'
import {keepAlive, leasesAlive} from '../../../src/adapters/fs/lease.js'
import {SCRATCH_DIR, deadRuns, openScratch} from '../../../src/adapters/fs/scratch.js'

const temp = () => mkdtemp(join(tmpdir(), 'lease-'))
const tenMinutesAgo = () => (Date.now() - 600_000) / 1000
const age = (path: string) => utimesSync(path, tenMinutesAgo(), tenMinutesAgo())

/** A process started now, to stand for a later process that got a dead run's PID. */
const sleeper = spawn('sleep', ['60'])
after(() => sleeper.kill())

/** A run directory as another run left it: its lease, its mtime ten minutes old unless `fresh`. */
function runDir(root: string, name: string, holder: object, fresh = false): string {
  const dir = join(root, SCRATCH_DIR, name)
  mkdirSync(dir, {recursive: true})
  writeFileSync(join(dir, 'lease.json'), JSON.stringify(holder))
  if (!fresh) age(dir)
  return dir
}

describe('leases', () => {
  it('a run on another host is dead once its heartbeat stops, alive while it beats; a reused PID holds nothing', async () => {
    // Given runs of another host (silent, and beating), a run whose PID a later process has, and our own run
    const root = await temp()
    const hourAgo = new Date(Date.now() - 3_600_000).toISOString()
    const silent = runDir(root, 'run-4242-aa@connect-pod-1', {pid: 4242, host: 'connect-pod-1', startedAt: hourAgo})
    const beating = runDir(root, 'run-4343-bb@connect-pod-2', {pid: 4343, host: 'connect-pod-2', startedAt: hourAgo})
    const reused = runDir(root, `run-${sleeper.pid}-cc@${hostname()}`, {
      pid: sleeper.pid,
      host: hostname(),
      startedAt: hourAgo,
    })
    const ours = await openScratch(root)
    // The other host's live run touches its directory (as its heartbeat worker would) while we watch.
    const stop = keepAlive(beating)
    try {
      // When the next run looks for dead runs
      const dead = await deadRuns(root)
      // Then the silent one and the reused PID's are dead; the beating one and ours are not
      assert.deepEqual(dead.sort(), [reused, silent].sort())
    } finally {
      stop()
      await ours.remove()
    }
  })

  it('a lease touched within the last seconds is alive at once, whoever holds it', async () => {
    const root = await temp()
    const file = join(root, 'lease')
    writeFileSync(file, '')
    const started = Date.now()
    assert.deepEqual(await leasesAlive([{path: file, holder: {pid: 1, host: 'elsewhere'}}]), [true])
    assert.ok(Date.now() - started < 4_000, 'no watch for a fresh lease')
    assert.deepEqual(await leasesAlive([{path: join(root, 'gone'), holder: {}}]), [false], 'a lease that is gone')
  })
})

describe('repository lock across hosts', () => {
  it("is taken over from a holder on another host whose heartbeat stopped, and refused while another host's beats", async () => {
    const repo = await temp()
    const lock = join(repo, LOCK)
    const holder = {pid: 77, host: 'cron-host-2', startedAt: new Date(Date.now() - 60_000).toISOString()}
    // A live holder elsewhere: its lock is a minute old by its body, but it keeps beating.
    writeFileSync(lock, JSON.stringify(holder))
    age(lock)
    const stop = keepAlive(lock)
    await assert.rejects(lockRepo(repo), (e: Error & {code?: string}) => e.code === 'REPO_LOCKED')
    stop()
    // The same holder, gone: nothing touches the lock any more.
    age(lock)
    const stale: string[] = []
    const release = await lockRepo(repo, (message) => stale.push(message))
    assert.match(stale.join(), /took over a stale lock .*pid 77 on cron-host-2/)
    assert.equal(JSON.parse(readFileSync(lock, 'utf8')).pid, process.pid)
    await release()
  })
})
