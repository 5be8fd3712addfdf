// The committed migration catalog and its overlay (catalog/*.json), read once per process.
import {readFile} from 'node:fs/promises'
import {join} from 'node:path'

import type {CatalogOverlay, MigrationCatalog} from '../core/catalog.js'
import {PACKAGE_ROOT} from './fs/bundle-dir.js'

let loaded: Promise<{catalog: MigrationCatalog; overlay: CatalogOverlay}> | undefined

export function loadCatalog(): Promise<{catalog: MigrationCatalog; overlay: CatalogOverlay}> {
  loaded ??= Promise.all(
    ['mlflow-migrations.json', 'overlay.json'].map(async (name) =>
      JSON.parse(await readFile(join(PACKAGE_ROOT, 'catalog', name), 'utf8')),
    ),
  ).then(([catalog, overlay]) => ({catalog, overlay}))
  return loaded
}
