import {request as httpRequest} from 'node:http'
import {request as httpsRequest} from 'node:https'

/** One HTTP exchange, with TLS options that Node's global fetch cannot take (a custom CA, insecure). */
export interface HttpRequest {
  method: string
  url: URL
  headers: Record<string, string>
  body?: Buffer | string
  timeoutMs: number
  ca?: string | Buffer
  insecure?: boolean
}

export interface HttpResponse {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Buffer
}

export class HttpTimeoutError extends Error {
  constructor(readonly timeoutMs: number) {
    super(`no response within ${timeoutMs} ms`)
  }
}

/** Sends the request and buffers the answer. Rejects on network errors and on the timeout. */
export function send(req: HttpRequest): Promise<HttpResponse> {
  return new Promise((resolve, reject) => {
    const isHttps = req.url.protocol === 'https:'
    const options = {
      method: req.method,
      headers: {...req.headers, ...(req.body === undefined ? {} : {'content-length': String(Buffer.byteLength(req.body))})},
      ...(isHttps ? {ca: req.ca, rejectUnauthorized: !req.insecure} : {}),
    }
    const client = (isHttps ? httpsRequest : httpRequest)(req.url, options, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => resolve({status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks)}))
      res.on('error', reject)
    })
    client.setTimeout(req.timeoutMs, () => client.destroy(new HttpTimeoutError(req.timeoutMs)))
    client.on('error', reject)
    client.end(req.body)
  })
}
