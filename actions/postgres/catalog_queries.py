"""The catalog queries behind `actions.catalog.describe`, one per kind of object.

They run with `search_path = pg_catalog`, so every type, default, view and bound is written
schema-qualified and means the same in the live database, a scratch restore and a manifest.
Names are "schema.name"; objects of extensions and of the bot's `rollback_*` schemas are left out.
"""

from __future__ import annotations

USER_SCHEMAS = """{n}.nspname NOT IN ('pg_catalog', 'information_schema') AND {n}.nspname NOT LIKE 'pg\\_%'
                  AND {n}.nspname NOT LIKE 'rollback\\_%'"""
NOT_EXTENSION = "NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.objid = {oid} AND e.deptype = 'e')"


def _user(n: str = "n", oid: str | None = None) -> str:
    condition = USER_SCHEMAS.format(n=n)
    return f"{condition} AND {NOT_EXTENSION.format(oid=oid)}" if oid else condition


# Every table with its partitioning, inheritance and RLS, one row per column (tables without any
# column still get one row).
TABLES = f"""
SELECT n.nspname, c.relname, c.relkind::text,
       (SELECT pn.nspname || '.' || p.relname FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
          JOIN pg_namespace pn ON pn.oid = p.relnamespace WHERE i.inhrelid = c.oid AND c.relispartition),
       CASE WHEN c.relispartition THEN pg_get_expr(c.relpartbound, c.oid) END,
       CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END,
       ARRAY(SELECT pn.nspname || '.' || p.relname FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
               JOIN pg_namespace pn ON pn.oid = p.relnamespace
              WHERE i.inhrelid = c.oid AND NOT c.relispartition ORDER BY i.inhseqno),
       CASE WHEN c.relforcerowsecurity AND c.relrowsecurity THEN 'enabled, forced'
            WHEN c.relrowsecurity THEN 'enabled' ELSE '' END,
       a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull, pg_get_expr(d.adbin, d.adrelid),
       a.attidentity::text, a.attgenerated::text,
       CASE WHEN a.attcollation <> ty.typcollation THEN quote_ident(co.collname) END
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
  LEFT JOIN pg_type ty ON ty.oid = a.atttypid
  LEFT JOIN pg_collation co ON co.oid = a.attcollation
 WHERE c.relkind IN ('r', 'p') AND {_user('n', 'c.oid')}
 ORDER BY n.nspname, c.relname, a.attnum"""

PRIMARY_KEYS = f"""
SELECT n.nspname || '.' || c.relname, array_agg(a.attname::text ORDER BY k.ord)
  FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 CROSS JOIN LATERAL unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
 WHERE con.contype = 'p' AND {_user()} GROUP BY 1"""

VIEWS = f"""
SELECT n.nspname || '.' || c.relname, pg_get_viewdef(c.oid), c.relkind = 'm'
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('v', 'm') AND {_user('n', 'c.oid')}"""

# A partition's index attached to a partitioned index names it as its parent.
INDEXES = f"""
SELECT n.nspname || '.' || ci.relname, tn.nspname || '.' || ct.relname, pg_get_indexdef(i.indexrelid),
       EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.contype IN ('p', 'u', 'x')),
       (SELECT pn.nspname || '.' || p.relname FROM pg_inherits h JOIN pg_class p ON p.oid = h.inhparent
          JOIN pg_namespace pn ON pn.oid = p.relnamespace WHERE h.inhrelid = ci.oid),
       ci.relkind = 'I'
  FROM pg_index i JOIN pg_class ci ON ci.oid = i.indexrelid JOIN pg_class ct ON ct.oid = i.indrelid
  JOIN pg_namespace n ON n.oid = ci.relnamespace JOIN pg_namespace tn ON tn.oid = ct.relnamespace
 WHERE {_user('n', 'ct.oid')}"""

# Inherited: a partition's copy of its parent's constraint, or a CHECK it only inherits. A foreign
# key to a partitioned table also has copies per referenced partition, under the same name: the
# constraint itself (not inherited) sorts last and wins.
CONSTRAINTS = f"""
SELECT n.nspname || '.' || c.relname, con.conname, con.contype::text, pg_get_constraintdef(con.oid),
       con.conparentid <> 0 OR (con.coninhcount > 0 AND NOT con.conislocal) AS inherited
  FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE {_user('n', 'c.oid')}
 ORDER BY 1, 2, inherited DESC"""

TRIGGERS = f"""
SELECT n.nspname || '.' || c.relname, t.tgname, pg_get_triggerdef(t.oid), t.tgenabled::text, t.tgparentid <> 0
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE NOT t.tgisinternal AND {_user('n', 'c.oid')}"""

POLICIES = f"""
SELECT n.nspname || '.' || c.relname, p.polname,
       concat_ws(' ', CASE WHEN p.polpermissive THEN 'AS PERMISSIVE' ELSE 'AS RESTRICTIVE' END,
                 'FOR ' || CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE'
                                         WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
                 'TO ' || (SELECT string_agg(CASE r WHEN 0 THEN 'PUBLIC' ELSE pg_get_userbyid(r)::text END, ', '
                                             ORDER BY 1) FROM unnest(p.polroles) AS r),
                 'USING (' || pg_get_expr(p.polqual, p.polrelid) || ')',
                 'WITH CHECK (' || pg_get_expr(p.polwithcheck, p.polrelid) || ')')
  FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE {_user('n', 'c.oid')}"""

# A definition's digest, so a changed body shows without storing every body in the manifest.
FUNCTIONS = f"""
SELECT n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
       md5(p.prokind::text || ':' || CASE WHEN p.prokind = 'a' THEN
             (SELECT concat_ws('|', a.aggkind, a.aggtransfn, a.aggfinalfn, a.aggcombinefn, a.aggtranstype::regtype,
                               a.agginitval) FROM pg_aggregate a WHERE a.aggfnoid = p.oid)
           ELSE pg_get_functiondef(p.oid) END)
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE {_user('n', 'p.oid')}"""

SEQUENCES = f"""
SELECT n.nspname || '.' || s.relname, q.last_value,
       (SELECT tn.nspname || '.' || tc.relname || '.' || a.attname
          FROM pg_depend d JOIN pg_class tc ON tc.oid = d.refobjid JOIN pg_namespace tn ON tn.oid = tc.relnamespace
          JOIN pg_attribute a ON a.attrelid = tc.oid AND a.attnum = d.refobjsubid
         WHERE d.classid = 'pg_class'::regclass AND d.objid = s.oid AND d.refclassid = 'pg_class'::regclass
           AND d.deptype IN ('a', 'i') LIMIT 1)
  FROM pg_class s JOIN pg_namespace n ON n.oid = s.relnamespace
  JOIN pg_sequences q ON q.schemaname = n.nspname AND q.sequencename = s.relname
 WHERE s.relkind = 'S' AND {_user('n', 's.oid')}"""

# Enums with their labels in order, domains with base type, NOT NULL, default and constraints,
# composite and range types with their shape. Table row types and multiranges are left out.
TYPES = f"""
SELECT n.nspname || '.' || t.typname,
       CASE t.typtype WHEN 'e' THEN 'enum' WHEN 'd' THEN 'domain' WHEN 'c' THEN 'composite' ELSE 'range' END,
       CASE t.typtype
         WHEN 'e' THEN jsonb_build_object('labels', (SELECT jsonb_agg(e.enumlabel ORDER BY e.enumsortorder)
                                                       FROM pg_enum e WHERE e.enumtypid = t.oid))
         WHEN 'd' THEN jsonb_build_object(
                'base', format_type(t.typbasetype, t.typtypmod), 'not_null', t.typnotnull, 'default', t.typdefault,
                'constraints', coalesce((SELECT jsonb_object_agg(k.conname, pg_get_constraintdef(k.oid))
                                           FROM pg_constraint k WHERE k.contypid = t.oid), '{{}}'::jsonb))
         WHEN 'c' THEN jsonb_build_object('attributes', (
                SELECT jsonb_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum)
                  FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped))
         ELSE jsonb_build_object('subtype', (SELECT format_type(r.rngsubtype, NULL) FROM pg_range r
                                              WHERE r.rngtypid = t.oid))
       END
  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
 WHERE t.typtype IN ('e', 'd', 'c', 'r')
   AND (t.typtype <> 'c' OR (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) = 'c')
   AND {_user('n', 't.oid')}"""

EXTENSIONS = "SELECT extname, extversion FROM pg_extension ORDER BY 1"

SCHEMAS = f"SELECT n.nspname FROM pg_namespace n WHERE {_user('n', 'n.oid')} ORDER BY 1"

# Privileges granted to others than the owner (so the comparison does not depend on who owns the
# objects), defaults included: a function nobody granted anything on still runs for PUBLIC.
GRANTS = f"""
SELECT g.object, array_agg(DISTINCT CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee)::text END
                           || ':' || a.privilege_type || CASE WHEN a.is_grantable THEN '*' ELSE '' END)
  FROM (
    SELECT CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                          WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END || ' ' || n.nspname || '.' || c.relname,
           c.relowner, coalesce(c.relacl, acldefault(CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::"char", c.relowner))
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND {_user('n', 'c.oid')}
    UNION ALL
    SELECT 'SCHEMA ' || n.nspname, n.nspowner, coalesce(n.nspacl, acldefault('n', n.nspowner))
      FROM pg_namespace n WHERE {_user('n', 'n.oid')}
    UNION ALL
    SELECT CASE p.prokind WHEN 'p' THEN 'PROCEDURE ' ELSE 'FUNCTION ' END || n.nspname || '.' || p.proname || '('
           || pg_get_function_identity_arguments(p.oid) || ')', p.proowner, coalesce(p.proacl, acldefault('f', p.proowner))
      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {_user('n', 'p.oid')}
    UNION ALL
    SELECT 'TYPE ' || n.nspname || '.' || t.typname, t.typowner, coalesce(t.typacl, acldefault('T', t.typowner))
      FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
     WHERE t.typtype IN ('e', 'd', 'r') AND {_user('n', 't.oid')}
  ) AS g(object, owner, acl)
 CROSS JOIN LATERAL aclexplode(g.acl) AS a
 WHERE a.grantee <> g.owner
 GROUP BY 1"""
