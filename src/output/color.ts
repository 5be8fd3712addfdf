/** The only place that decides whether to colour output. */
export interface ColorEnv {
  noColorFlag: boolean
  env: Record<string, string | undefined>
  isTTY: boolean
}

export function useColor({noColorFlag, env, isTTY}: ColorEnv): boolean {
  if (noColorFlag || env.NO_COLOR !== undefined || env.TERM === 'dumb') return false
  if (env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== '0') return true
  return isTTY
}

export interface Painter {
  ok(text: string): string
  warn(text: string): string
  fail(text: string): string
  dim(text: string): string
  bold(text: string): string
}

const wrap = (open: number, close: number) => (text: string) => `\u001B[${open}m${text}\u001B[${close}m`
const plain = (text: string) => text

export function painter(enabled: boolean): Painter {
  if (!enabled) return {ok: plain, warn: plain, fail: plain, dim: plain, bold: plain}
  return {ok: wrap(32, 39), warn: wrap(33, 39), fail: wrap(31, 39), dim: wrap(2, 22), bold: wrap(1, 22)}
}
