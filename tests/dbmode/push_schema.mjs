#!/usr/bin/env node
// TEST INFRASTRUCTURE ONLY: `prisma db push` without Prisma's native schema engine.
//   push_schema.mjs SCHEMA.prisma DATABASE_URL
// Brings the database level with LiteLLM's schema.prisma through the WebAssembly schema engine
// on the `pg` driver adapter (packages from $CARROT_DBMODE_HOME, scripts/setup_dbmode.sh).
// Prints the number of executed steps; exits 1 with the engine's message on failure.
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import { readSystemTypesAsText } from './pg_text_types.mjs'

const [schemaPath, databaseUrl] = process.argv.slice(2)
if (!schemaPath || !databaseUrl) throw new Error('usage: push_schema.mjs SCHEMA.prisma DATABASE_URL')
const home = process.env.CARROT_DBMODE_HOME
if (!home) throw new Error('CARROT_DBMODE_HOME is not set (scripts/setup_dbmode.sh prints it)')
const require = createRequire(path.join(home, 'package.json'))
const { PrismaPg } = require('schema-adapter-pg')
readSystemTypesAsText(require('pg'))
const { bindMigrationAwareSqlAdapterFactory } = createRequire(require.resolve('schema-adapter-pg'))('@prisma/driver-adapter-utils')

const dir = path.join(home, 'node_modules/schema-engine-wasm')
const bg = await import(pathToFileURL(path.join(dir, 'schema_engine_bg.js')))
const { instance } = await WebAssembly.instantiate(readFileSync(path.join(dir, 'schema_engine_bg.wasm')),
  { './schema_engine_bg.js': bg })
bg.__wbg_set_wasm(instance.exports)
instance.exports.__wbindgen_start?.()

const content = readFileSync(schemaPath, 'utf8')
const factory = bindMigrationAwareSqlAdapterFactory(new PrismaPg({ connectionString: databaseUrl }))
try {
  const engine = await bg.SchemaEngine.new({ datamodels: [[schemaPath, content]] }, () => {}, factory)
  const out = await engine.schemaPush({
    force: true,
    schema: { files: [{ path: schemaPath, content }] },
    filters: { externalTables: [], externalEnums: [] },
  })
  if (out.unexecutable.length) throw new Error(`unexecutable steps: ${out.unexecutable.join('; ')}`)
  console.log(JSON.stringify({ executedSteps: out.executedSteps, warnings: out.warnings }))
  process.exit(0)
} catch (e) {
  console.error(`schema push failed: ${e?.message ?? e}`)
  process.exit(1)
}
