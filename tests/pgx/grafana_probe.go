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
