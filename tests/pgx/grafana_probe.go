// The queries Grafana's PostgreSQL data source sends, through pgx v4 (Debian's
// golang-github-jackc-pgx-v4-dev) with its defaults: every query with arguments, and every
// QueryRow, is prepared over the extended protocol and its results read in binary where pgx can.
// Prints one JSON object per step; the test (tests/pgx.test.ts) checks them.
//
//	go run grafana_probe.go 'postgres://admin:quest@127.0.0.1:8812/qdb' trades 2026-01-02T00:00:00Z 2026-01-02T01:00:00Z
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v4"
)

func emit(step string, value interface{}, err error) {
	out := map[string]interface{}{"step": step, "value": value}
	if err != nil {
		out["error"] = err.Error()
	}
	line, _ := json.Marshal(out)
	fmt.Println(string(line))
}

// Grafana's "in the search path" constraint, as its query builder writes it.
const searchPath = `
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          )`

// strings runs a query and returns its rows' text values, joined by '|' per row, with its error.
func strings(ctx context.Context, conn *pgx.Conn, sql string) ([]string, error) {
	rows, err := conn.Query(ctx, sql)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		values, err := rows.Values()
		if err != nil {
			return nil, err
		}
		line := ""
		for i, v := range values {
			if i > 0 {
				line += "|"
			}
			line += fmt.Sprint(v)
		}
		out = append(out, line)
	}
	return out, rows.Err()
}

// emitRows runs sql and emits its rows as text.
func emitRows(ctx context.Context, conn *pgx.Conn, step string, sql string) {
	rows, err := strings(ctx, conn, sql)
	emit(step, rows, err)
}

func main() {
	ctx := context.Background()
	url, table, from, to := os.Args[1], os.Args[2], os.Args[3], os.Args[4]
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		emit("connect", nil, err)
		os.Exit(1)
	}
	defer conn.Close(ctx)

	emit("ping", nil, conn.Ping(ctx))
	_, err = conn.Exec(ctx, "-- ping")
	emit("comment ping", nil, err)

	var version int
	err = conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int/100").Scan(&version)
	emit("version", version, err)

	// The query builder's metadata queries (grafana-postgresql-datasource/postgresMetaQuery.ts).
	emitRows(ctx, conn, "schemas", `SELECT schema_name AS "name" FROM information_schema.schemata
    WHERE schema_name NOT IN ('information_schema', 'pg_catalog', 'pg_toast', '_timescaledb_cache') ORDER BY schema_name`)
	emitRows(ctx, conn, "timescaledb", "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
	emitRows(ctx, conn, "tables", `SELECT
    CASE WHEN `+searchPath+`
      THEN quote_ident(table_name)
      ELSE quote_ident(table_schema) || '.' || quote_ident(table_name)
    END AS "table"
    FROM information_schema.tables
    WHERE quote_ident(table_schema) NOT IN ('information_schema', 'pg_catalog', '_timescaledb_cache')
    ORDER BY CASE WHEN `+searchPath+` THEN 0 ELSE 1 END, 1`)
	quoted := "'" + table + "'"
	emitRows(ctx, conn, "schema of table", `SELECT quote_ident(column_name) AS "column", data_type AS "type"
    FROM information_schema.columns
    WHERE
      CASE WHEN array_length(parse_ident(`+quoted+`),1) = 2
        THEN quote_ident(table_schema) = (parse_ident(`+quoted+`))[1]
          AND quote_ident(table_name) = (parse_ident(`+quoted+`))[2]
        ELSE quote_ident(table_name) = `+quoted+`
          AND `+searchPath+`
      END`)

	rows, err := conn.Query(ctx,
		"SELECT column_name, data_type FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position", table)
	columns := [][]string{}
	if err == nil {
		for rows.Next() {
			var name, kind string
			if err = rows.Scan(&name, &kind); err != nil {
				break
			}
			columns = append(columns, []string{name, kind})
		}
		rows.Close()
		if err == nil {
			err = rows.Err()
		}
	}
	emit("columns", columns, err)

	// $__timeFilter(timestamp) and a bucket named time, as the query builder writes them.
	series := fmt.Sprintf(
		"SELECT time_bucket('1m', timestamp) AS time, avg(price) AS value FROM %s WHERE timestamp BETWEEN '%s' AND '%s' GROUP BY 1 ORDER BY 1",
		table, from, to)
	rows, err = conn.Query(ctx, series)
	points := [][]interface{}{}
	if err == nil {
		for rows.Next() {
			var at time.Time
			var value float64
			if err = rows.Scan(&at, &value); err != nil {
				break
			}
			points = append(points, []interface{}{at.UTC().Format(time.RFC3339Nano), value})
		}
		rows.Close()
		if err == nil {
			err = rows.Err()
		}
	}
	emit("series", points, err)

	// A time parameter: pgx sends time.Time as a binary timestamptz.
	start, _ := time.Parse(time.RFC3339, from)
	var count int64
	err = conn.QueryRow(ctx, fmt.Sprintf("SELECT count(*) FROM %s WHERE timestamp >= $1", table), start.Add(time.Minute)).Scan(&count)
	emit("count since", count, err)

	var last time.Time
	var lastSym string
	err = conn.QueryRow(ctx, fmt.Sprintf("SELECT timestamp, sym FROM %s ORDER BY timestamp DESC LIMIT 1", table)).Scan(&last, &lastSym)
	emit("last", []interface{}{last.UTC().Format(time.RFC3339Nano), lastSym}, err)
}
