import {Args, Flags} from '@oclif/core'
import {resolve} from 'node:path'

import {MlflowctlCommand} from '../base-command.js'
import {buildBundleArchive, type BundleArchiveResult} from '../core/bundle-archive.js'

export default class Bundle extends MlflowctlCommand<typeof Bundle> {
  static summary = 'Build the tar.gz archive that Posit Connect accepts from a rendered bundle.'
  static description = `Checks every checksum in manifest.json first and refuses (exit 6) if a file changed or is
missing. Files sit at the archive root with manifest.json last; the archive is written to FILE.partial and renamed
when complete.`
  static examples = ['<%= config.bin %> <%= command.id %> ./mlflow-server --output mlflow-server.tar.gz']
  static args = {
    dir: Args.directory({description: 'A bundle rendered by `mlflowctl init`.', required: true, exists: true}),
  }
  static flags = {
    output: Flags.file({char: 'o', summary: 'Archive to write.', required: true, env: 'MLFLOWCTL_OUTPUT'}),
  }

  async run(): Promise<BundleArchiveResult> {
    const result = await buildBundleArchive(await this.deps.bundleArchive(), {
      dir: resolve(this.args.dir),
      output: resolve(this.flags.output),
    })
    this.out(
      `Wrote ${result.file} (${result.bytes} bytes, ${result.files.length} files, app mode ${result.appMode})\nsha256 ${result.sha256}`,
    )
    return result
  }
}
