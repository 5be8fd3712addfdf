import {createReadStream} from 'node:fs'
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
      headers: {
        ...req.headers,
        ...(req.body === undefined ? {} : {'content-length': String(Buffer.byteLength(req.body))}),
      },
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

export interface StreamedResponse {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: import('node:http').IncomingMessage
}

/**
 * Like send, but the answer's body is a stream (a snapshot can be gigabytes), and the request body can be
 * a file streamed from disk. The timeout covers the wait for the response headers and idle gaps after.
 */
export function open(
  req: Omit<HttpRequest, 'body'> & {bodyFile?: {path: string; size: number}},
): Promise<StreamedResponse> {
  return new Promise((resolve, reject) => {
    const isHttps = req.url.protocol === 'https:'
    const options = {
      method: req.method,
      headers: {...req.headers, 'content-length': String(req.bodyFile?.size ?? 0)},
      ...(isHttps ? {ca: req.ca, rejectUnauthorized: !req.insecure} : {}),
    }
    const client = (isHttps ? httpsRequest : httpRequest)(req.url, options, (res) =>
      resolve({status: res.statusCode ?? 0, headers: res.headers, body: res}),
    )
    client.setTimeout(req.timeoutMs, () => client.destroy(new HttpTimeoutError(req.timeoutMs)))
    client.on('error', reject)
    if (req.bodyFile) {
      const source = createReadStream(req.bodyFile.path)
      source.on('error', (error) => client.destroy(error))
      source.pipe(client)
    } else client.end()
  })
}
