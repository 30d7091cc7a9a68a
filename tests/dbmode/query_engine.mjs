#!/usr/bin/env node
// TEST INFRASTRUCTURE ONLY: a stand-in for Prisma's native `query-engine` binary, so LiteLLM's
// database mode (prisma-python 0.15) runs on a machine that cannot download Prisma's engines.
// Production uses the native engines (compose, the image).
//
// prisma-python starts `$PRISMA_QUERY_ENGINE_BINARY -p PORT ...` with PRISMA_DML_PATH and
// DATABASE_URL in the environment and speaks the engine's GraphQL protocol over HTTP. This server
// answers that protocol with the WebAssembly build of the same engine (5.17.0, the hash
// prisma-python pins) on the `pg` driver adapter, translating each GraphQL request into the
// engine's JSON protocol: Json fields are tagged from the schema, type tags are stripped from the
// answers, Postgres system types the adapter rejects (`name`, `"char"`) are read as text.
// Packages come from $CARROT_DBMODE_HOME/node_modules (scripts/setup_dbmode.sh).
import { readFileSync } from 'node:fs'
import http from 'node:http'
import { createRequire } from 'node:module'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import { readSystemTypesAsText } from './pg_text_types.mjs'

const ENGINE_HASH = '393aa359c9ad4a4bb28630fb5613f9c281cde053'
if (process.argv.includes('--version')) {
  console.log(`query-engine ${ENGINE_HASH}`) // the Prisma CLI asks before `prisma generate`
  process.exit(0)
}
const home = process.env.CARROT_DBMODE_HOME
if (!home) throw new Error('CARROT_DBMODE_HOME is not set (scripts/setup_dbmode.sh prints it)')
const modules = path.join(home, 'node_modules')
const require = createRequire(path.join(home, 'package.json'))
const pg = require('pg')
const { PrismaPg } = require('@prisma/adapter-pg')
const { bindAdapter } = require('@prisma/driver-adapter-utils')
const { parse, Kind } = require('graphql')
readSystemTypesAsText(pg)

const port = Number(process.argv[process.argv.indexOf('-p') + 1])
if (!port) throw new Error('usage: query_engine.mjs -p PORT')
const datamodel = readFileSync(process.env.PRISMA_DML_PATH, 'utf8')
const overrides = process.env.OVERWRITE_DATASOURCES ? JSON.parse(process.env.OVERWRITE_DATASOURCES) : []
const databaseUrl = overrides[0]?.url || process.env.DATABASE_URL

// --- the schema: which fields are Json, which are relations (to which model) ------------------
const models = new Map()
for (const [, name, body] of datamodel.matchAll(/^model\s+(\w+)\s*\{([\s\S]*?)^\}/gm)) {
  const fields = new Map()
  for (const [, field, type] of body.matchAll(/^\s*(\w+)\s+(\w+)/gm)) fields.set(field, type)
  models.set(name, fields)
}

// --- the engine ---------------------------------------------------------------------------------
const wasmDir = path.join(modules, '@prisma/query-engine-wasm/postgresql')
const bg = await import(pathToFileURL(path.join(wasmDir, 'query_engine_bg.js')))
const { instance } = await WebAssembly.instantiate(readFileSync(path.join(wasmDir, 'query_engine_bg.wasm')),
  { './query_engine_bg.js': bg })
bg.__wbg_set_wasm(instance.exports)
const pool = new pg.Pool({ connectionString: databaseUrl, max: 10 })
const engine = new bg.QueryEngine({ datamodel, logLevel: 'error', logQueries: false },
  (log) => { if (process.env.CARROT_DBMODE_DEBUG) process.stderr.write(`${log}\n`) },
  bindAdapter(new PrismaPg(pool)))
await engine.connect('{}')

// --- GraphQL -> JSON protocol ---------------------------------------------------------------------
const ACTIONS = ['findUnique', 'findFirst', 'findMany', 'createOne', 'createMany', 'updateOne', 'updateMany',
  'deleteOne', 'deleteMany', 'upsertOne', 'aggregate', 'groupBy']
const JSON_FILTER_KEYS = new Set(['equals', 'not', 'set'])

function value(node) {
  switch (node.kind) {
    case Kind.OBJECT: return Object.fromEntries(node.fields.map((f) => [f.name.value, value(f.value)]))
    case Kind.LIST: return node.values.map(value)
    case Kind.INT: case Kind.FLOAT: return Number(node.value)
    case Kind.NULL: return null
    default: return node.value // string, boolean, enum
  }
}

const tagJson = (v) => (typeof v === 'string' ? { $type: 'Json', value: v } : v)

/** Tag the values of Json fields (prisma-python sends them as JSON strings) below `v`, in `model`. */
function tagJsonFields(v, model) {
  if (Array.isArray(v)) return v.map((x) => tagJsonFields(x, model))
  if (v === null || typeof v !== 'object') return v
  const fields = models.get(model)
  const out = {}
  for (const [k, x] of Object.entries(v)) {
    const type = fields?.get(k)
    if (type === 'Json') {
      out[k] = x !== null && typeof x === 'object' && !Array.isArray(x)
        ? Object.fromEntries(Object.entries(x).map(([op, y]) => [op, JSON_FILTER_KEYS.has(op) ? tagJson(y) : y]))
        : tagJson(x)
    } else {
      out[k] = tagJsonFields(x, type && models.has(type) ? type : model)
    }
  }
  return out
}

function selection(set, model) {
  const out = {}
  for (const f of set?.selections ?? []) {
    const name = f.name.value
    if (!f.selectionSet) { out[name] = true; continue }
    const type = models.get(model)?.get(name)
    const related = type && models.has(type) ? type : model
    const sub = { selection: selection(f.selectionSet, related) }
    if (f.arguments.length) sub.arguments = args(f.arguments, related)
    out[name] = sub
  }
  return out
}

function args(list, model) {
  return tagJsonFields(Object.fromEntries(list.map((a) => [a.name.value, value(a.value)])), model)
}

/** One GraphQL operation string -> [alias, JSON-protocol request]. */
function translate(query) {
  const op = parse(query).definitions[0]
  const field = op.selectionSet.selections[0]
  const alias = field.alias?.value ?? field.name.value
  let name = field.name.value
  if (name === 'executeRaw' || name === 'queryRaw') {
    const a = Object.fromEntries(field.arguments.map((x) => [x.name.value, value(x.value)]))
    return [alias, { action: name, query: { arguments: a, selection: {} } }]
  }
  const orThrow = name.endsWith('OrThrow')
  if (orThrow) name = name.slice(0, -'OrThrow'.length)
  const action = ACTIONS.find((a) => name.startsWith(a) && models.has(name.slice(a.length)))
  if (!action) throw new Error(`unsupported operation ${field.name.value}`)
  const modelName = name.slice(action.length)
  return [alias, {
    modelName,
    action: orThrow ? `${action}OrThrow` : action,
    query: { arguments: args(field.arguments, modelName), selection: selection(field.selectionSet, modelName) },
  }]
}

/** Drop the JSON protocol's type tags ({"$type": "DateTime", "value": ...}) from an answer. */
function untag(v) {
  if (Array.isArray(v)) return v.map(untag)
  if (v === null || typeof v !== 'object') return v
  if (typeof v.$type === 'string' && 'value' in v && Object.keys(v).length === 2) return v.value
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, untag(x)]))
}

function answer(alias, raw) {
  const res = JSON.parse(raw)
  if (res.errors) return res
  return { data: { [alias]: untag(Object.values(res.data)[0]) } }
}

async function run(body, txId) {
  if (body.batch) {
    const parts = body.batch.map((b) => translate(b.query))
    const res = JSON.parse(await engine.query(JSON.stringify({
      batch: parts.map(([, q]) => q), transaction: body.transaction ? {} : undefined,
    }), '{}', txId))
    if (res.errors) return res
    return { batchResult: res.batchResult.map((r, i) => (r.errors ? r : answer(parts[i][0], JSON.stringify(r)))) }
  }
  const [alias, q] = translate(body.query)
  return answer(alias, await engine.query(JSON.stringify(q), '{}', txId))
}

// --- HTTP -------------------------------------------------------------------------------------------
async function route(req, body) {
  const url = new URL(req.url, 'http://engine')
  const tx = url.pathname.match(/^\/transaction\/([^/]+)\/(commit|rollback)$/)
  if (req.method === 'GET' && url.pathname === '/status') return { status: 'ok' }
  if (req.method === 'POST' && url.pathname === '/') return run(JSON.parse(body), req.headers['x-transaction-id'])
  if (req.method === 'POST' && url.pathname === '/transaction/start') {
    return JSON.parse(await engine.startTransaction(body, '{}'))
  }
  if (req.method === 'POST' && tx) {
    const fn = tx[2] === 'commit' ? 'commitTransaction' : 'rollbackTransaction'
    return JSON.parse(await engine[fn](tx[1], '{}'))
  }
  return null
}

const server = http.createServer((req, res) => {
  let body = ''
  req.on('data', (c) => { body += c })
  req.on('end', async () => {
    try {
      const out = await route(req, body)
      res.writeHead(out === null ? 404 : 200, { 'content-type': 'application/json' })
      res.end(JSON.stringify(out ?? { errors: [{ error: `no route ${req.method} ${req.url}` }] }))
    } catch (e) {
      res.writeHead(500, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ errors: [{ error: String(e?.stack ?? e), user_facing_error: { is_panic: false, message: String(e?.message ?? e) } }] }))
    }
  })
})
server.listen(port, '127.0.0.1')
// prisma-python connects to http://localhost:PORT, which may resolve to ::1 first
http.createServer(server.listeners('request')[0]).on('error', () => {}).listen(port, '::1')
const stop = async () => { server.close(); await engine.disconnect('{}').catch(() => {}); await pool.end(); process.exit(0) }
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
