// Builds tampered copies of real backup archives for the tests that check what verify and restore refuse.
import {createReadStream, createWriteStream} from 'node:fs'
import {pipeline} from 'node:stream/promises'
import {createGunzip, createGzip} from 'node:zlib'

import tarStream from 'tar-stream'

/** Copies `source` to `target`, letting `edit` replace an entry by others (null keeps it; [] drops it). */
export async function rewriteArchive(
  source: string,
  target: string,
  edit: (name: string, data: Buffer) => {name: string; data: Buffer; type?: 'symlink'; linkname?: string}[] | null,
) {
  const pack = tarStream.pack()
  const extract = tarStream.extract()
  extract.on('entry', (header, stream, next) => {
    const chunks: Buffer[] = []
    stream.on('data', (chunk: unknown) => chunks.push(chunk as Buffer))
    stream.on('end', () => {
      for (const entry of edit(header.name, Buffer.concat(chunks)) ?? [
        {name: header.name, data: Buffer.concat(chunks)},
      ]) {
        if (entry.type === 'symlink') pack.entry({name: entry.name, type: 'symlink', linkname: entry.linkname})
        else pack.entry({name: entry.name, size: entry.data.length}, entry.data)
      }
      next()
    })
  })
  extract.on('finish', () => pack.finalize())
  await Promise.all([
    pipeline(createReadStream(source), createGunzip(), extract),
    pipeline(pack, createGzip(), createWriteStream(target)),
  ])
}
