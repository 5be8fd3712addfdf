// The committed migration catalog and its overlay (catalog/*.json), read once per process.
import {readFile} from 'node:fs/promises'
import {join} from 'node:path'

import type {CatalogOverlay, MigrationCatalog} from '../core/catalog.js'
import type {MigrationCosts} from '../core/migration-estimate.js'
import {PACKAGE_ROOT} from './fs/bundle-dir.js'

export interface Catalog {
  catalog: MigrationCatalog
  overlay: CatalogOverlay
  /** Measured seconds per row of heavy migrations (bench/migration-cost.mjs). */
  costs: MigrationCosts
}

let loaded: Promise<Catalog> | undefined

export function loadCatalog(): Promise<Catalog> {
  loaded ??= Promise.all(
    ['mlflow-migrations.json', 'overlay.json', 'migration-costs.json'].map(async (name) =>
      JSON.parse(await readFile(join(PACKAGE_ROOT, 'catalog', name), 'utf8')),
    ),
  ).then(([catalog, overlay, costs]) => ({catalog, overlay, costs}))
  return loaded
}
