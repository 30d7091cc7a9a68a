// Postgres system types that Prisma's pg driver adapters refuse (`"char"` oid 18, `name` oid 19 and
// their arrays 1002, 1003; LiteLLM and the schema engine read them from pg_catalog, e.g.
// ARRAY_AGG(viewname)) are described to the adapters as text and text[].
const AS_TEXT = new Map([[18, 25], [19, 25], [1002, 1009], [1003, 1009]])

/** Patch the `pg` module (`require('pg')`) so result columns of those types report text. */
export function readSystemTypesAsText(pg) {
  const addFields = pg.Result.prototype.addFields
  pg.Result.prototype.addFields = function (fields) {
    for (const f of fields) f.dataTypeID = AS_TEXT.get(f.dataTypeID) ?? f.dataTypeID
    return addFields.call(this, fields)
  }
}
