"""Lexical search: BM25 over Postgres full-text lexemes, typo correction by trigrams, symbol and path lookups."""

from __future__ import annotations

from collections.abc import Sequence

from .base import Connection, IndexInfo, Read, path_filter
from .writes import TS_CONFIG

K1, B = 1.2, 0.75
MIN_DF_CUTOFF = 200  # common-term pruning only where postings are long; small indexes keep every term
MIN_TYPO_LENGTH = 5  # shorter unknown words are names or abbreviations more often than typos


class Lexical(Connection):
    def bm25_read(self, info: IndexInfo, query_terms: str, limit: int, max_terms: int = 48,
                  paths: Sequence[str] = (), max_df_ratio: float = 1.0, extra_lexemes: Sequence[str] = ()) -> Read:
        """(chunk_id, BM25 score) over Postgres full-text lexemes, as a read to send with others
        (`Connection.read`): the rarest `max_terms` query terms (plus `extra_lexemes`, e.g. typo corrections),
        leaving out terms in more than `max_df_ratio` of the chunks (long postings, little weight). All
        arithmetic in float8: numeric `ln` was slower."""
        path_sql, params = path_filter(paths)
        return Read(
            f"""
            WITH qt AS (
                SELECT lexeme, coalesce(array_length(positions, 1), 1) AS qtf
                FROM unnest(to_tsvector('{TS_CONFIG}', %(text)s))
                UNION SELECT x, 1 FROM unnest(%(extra)s::text[]) x),
            q AS (
                SELECT t.lexeme, max(ln(1 + (%(n)s - t.df + 0.5) / (t.df + 0.5)) * (1 + ln(qt.qtf::float8))) AS w
                FROM qt JOIN rag_terms t ON t.index_id = %(idx)s AND t.lexeme = qt.lexeme
                WHERE t.df <= %(maxdf)s GROUP BY t.lexeme, t.df ORDER BY t.df ASC LIMIT %(maxterms)s)
            SELECT p.chunk_id, sum(q.w * p.tf * {K1 + 1} / (p.tf + {K1} * (1 - {B} + {B} * p.doclen::float8 / %(avgdl)s))) AS s
            FROM q JOIN rag_postings p ON p.index_id = %(idx)s AND p.lexeme = q.lexeme
            {'JOIN rag_chunks c ON c.id = p.chunk_id WHERE true ' + path_sql if path_sql else ''}
            GROUP BY p.chunk_id ORDER BY s DESC LIMIT %(lim)s
            """,
            {"text": query_terms, "extra": list(extra_lexemes), "n": float(max(1, info.chunks)), "idx": info.id,
             "avgdl": max(1.0, info.avgdl), "maxterms": max_terms,
             "maxdf": max(MIN_DF_CUTOFF, int(max_df_ratio * info.chunks)), "lim": limit, **params},
            lambda rows: [(cid, float(s)) for cid, s in rows],
        )

    def typo_corrections(self, info: IndexInfo, query_terms: str, min_similarity: float) -> list[str]:
        """Indexed lexemes nearest (trigram similarity ≥ `min_similarity`) to each query lexeme the index
        does not have: "disconected" finds "disconnect". Empty without pg_trgm."""
        if not self.trigrams or min_similarity <= 0:
            return []
        rows = self.conn.execute(
            f"""
            WITH unknown AS (
                SELECT DISTINCT lexeme FROM unnest(to_tsvector('{TS_CONFIG}', %(text)s))
                WHERE length(lexeme) >= {MIN_TYPO_LENGTH} AND NOT EXISTS (
                    SELECT 1 FROM rag_terms t WHERE t.index_id = %(idx)s AND t.lexeme = unnest.lexeme))
            SELECT u.lexeme, best.lexeme FROM unknown u CROSS JOIN LATERAL (
                SELECT t.lexeme FROM rag_terms t WHERE t.index_id = %(idx)s AND t.lexeme %% u.lexeme
                AND similarity(t.lexeme, u.lexeme) >= %(sim)s
                ORDER BY similarity(t.lexeme, u.lexeme) DESC, t.df DESC LIMIT 1) best
            """,
            {"text": query_terms, "idx": info.id, "sim": min_similarity},
        ).fetchall()
        return [r[1] for r in rows]

    def symbols_read(self, info: IndexInfo, names: Sequence[str], dotted: Sequence[str], limit: int,
                     paths: Sequence[str] = ()) -> Read:
        """(chunk id, qualified) for chunks whose symbol's last part is one of `names` or ends one of the
        `dotted` names, as a read to send with others; qualified = the symbol ends with the whole dotted name.
        Case-insensitive."""
        def convert(rows: list[tuple]) -> list[tuple[int, bool]]:
            return [(r[0], bool(r[1])) for r in rows]

        if not names and not dotted:
            return Read(None, None, convert)
        path_sql, params = path_filter(paths)
        return Read(
            # qualified: the lower-cased symbol is a dotted name or ends with "." + one (one LIKE pass per row)
            "SELECT c.id, lower(c.symbol) LIKE ANY(%(qualified)s) AS qualified "
            "FROM rag_chunks c WHERE c.index_id = %(idx)s AND c.symbol_key = ANY(%(keys)s) "
            f"{path_sql} ORDER BY qualified DESC, c.id LIMIT %(lim)s",
            {"idx": info.id, "keys": list({n.rsplit(".", 1)[-1].lower() for n in (*names, *dotted)}),
             "qualified": [p for d in dotted for p in (like_literal(d.lower()), "%." + like_literal(d.lower()))],
             "lim": limit, **params},
            convert,
        )

    def paths_matching_read(self, info: IndexInfo, suffixes: Sequence[str]) -> Read:
        """Indexed file paths that end with, or are the tail of, a path mentioned in a query, as a read to send
        with others. A bare file name that several files share (`__init__.py`, `utils.py`) names none of them.
        Postgres finds the candidates by the index's path key (a mention's tails) and one LIKE pass (paths a
        mention ends); which mention each one answers is decided here, on those few rows."""
        def convert(rows: list[tuple]) -> list[str]:
            per_mention: dict[str, list[str]] = {}
            for mention in suffixes:
                for (path,) in rows:
                    if path == mention or path.endswith("/" + mention) or mention.endswith("/" + path):
                        per_mention.setdefault(mention, []).append(path)
            return list(dict.fromkeys(p for m, ps in per_mention.items() if "/" in m or len(ps) == 1 for p in ps))

        tails = {m.split("/", i)[-1] for m in suffixes for i in range(m.count("/") + 1)}
        return Read(
            "SELECT path FROM rag_files WHERE index_id = %s AND (path = ANY(%s) OR path LIKE ANY(%s))"
            if suffixes else None,
            (info.id, sorted(tails), ["%/" + like_literal(m) for m in suffixes]), convert,
        )


def like_literal(text: str) -> str:
    """`text` matched literally in a LIKE pattern (its `%`, `_` and `\\` escaped)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
