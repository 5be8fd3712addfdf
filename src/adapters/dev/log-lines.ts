/**
 * The dev log holds one JSON object per line, in the extension's own shape ({ts, level, logger, msg}): lines the
 * extension's formatter wrote pass through, and every other line the server process prints (the WSGI master's
 * banner, a warning printed before logging is configured, a traceback) is wrapped in that shape and masked.
 */
import {redact} from '../../core/redact.js'

export type LogSource = 'stdout' | 'stderr'

/** One log line as JSON: a JSON object line as it is, anything else wrapped (level from a "LEVEL:" prefix). Pure. */
export function asJsonLogLine(line: string, source: LogSource, now: Date, secrets: string[]): string {
  const trimmed = line.trim()
  if (trimmed.startsWith('{')) {
    try {
      const parsed = JSON.parse(trimmed)
      if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) return redact(trimmed, secrets)
    } catch {
      // not JSON after all: wrapped below
    }
  }
  // uvicorn's "INFO:     Started server process", gunicorn's "[date] [pid] [INFO] Booting worker".
  const match = /^(DEBUG|INFO|WARNING|ERROR|CRITICAL):|\[(DEBUG|INFO|WARNING|ERROR|CRITICAL)\]/.exec(trimmed)
  return JSON.stringify({
    ts: `${now.toISOString().slice(0, 19)}Z`,
    level: (match?.[1] ?? match?.[2] ?? (/\w*Warning: /.test(trimmed) ? 'warning' : 'info')).toLowerCase(),
    logger: `server.${source}`,
    msg: redact(trimmed, secrets),
  })
}

/** A line of the dev tooling itself (supervisor, dev up), in the same shape. Pure but for the clock. */
export function logEvent(level: 'info' | 'error', event: string, msg: string): string {
  return JSON.stringify({ts: `${new Date().toISOString().slice(0, 19)}Z`, level, logger: 'mlflowctl.dev', event, msg})
}
