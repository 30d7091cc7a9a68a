// Postgres system types that Prisma's pg driver adapters refuse (`"char"` oid 18, `name` oid 19;
// LiteLLM and the schema engine read them from pg_catalog) are described to the adapters as text.
const SYSTEM_TEXT_OIDS = new Set([18, 19])
const TEXT_OID = 25

/** Patch the `pg` module (`require('pg')`) so result columns of those types report text. */
export function readSystemTypesAsText(pg) {
  const addFields = pg.Result.prototype.addFields
  pg.Result.prototype.addFields = function (fields) {
    for (const f of fields) if (SYSTEM_TEXT_OIDS.has(f.dataTypeID)) f.dataTypeID = TEXT_OID
    return addFields.call(this, fields)
  }
}
